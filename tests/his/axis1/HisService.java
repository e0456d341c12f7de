// An Apache Axis 1.4 HIS for tests/soap_his.rs: a plain Java class deployed as an RPC service
// (server-config.wsdd, Axis's default rpc/encoded style, as most Axis-era HIS services are) in
// Axis's SimpleAxisServer:
//   javac -g -encoding UTF-8 -cp <axis jars> -d classes HisService.java
//   java -cp classes:<axis jars> org.apache.axis.transport.http.SimpleAxisServer -p <port>
// (run in the directory holding server-config.wsdd). createCard(param) answers JSON echoing the
// exact param text it got and the request's SOAPAction, plus a name with 𠮷 (U+20BB7), which
// Axis 1.4 writes as a surrogate pair of character references.
import org.apache.axis.MessageContext;

public class HisService {
    public String createCard(String param) {
        MessageContext ctx = MessageContext.getCurrentContext();
        String action = ctx == null ? null : ctx.getSOAPActionURI();
        return "{\"success\":true,\"msg\":\"成功\",\"code\":\"10001\",\"data\":{"
            + "\"toolkit\":" + str("Apache Axis " + org.apache.axis.Version.getVersion().replaceAll("(?s).*version: (\\S+).*", "$1"))
            + ",\"param\":" + str(param)
            + ",\"soapAction\":" + str(action)
            + ",\"patientName\":\"𠮷野 张三\"}}";
    }

    /// A JSON string literal (null as null).
    private static String str(String s) {
        if (s == null) {
            return "null";
        }
        StringBuilder b = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            switch (c) {
                case '"': b.append("\\\""); break;
                case '\\': b.append("\\\\"); break;
                default:
                    if (c < 0x20) {
                        b.append(String.format("\\u%04x", (int) c));
                    } else {
                        b.append(c);
                    }
            }
        }
        return b.append('"').toString();
    }
}
