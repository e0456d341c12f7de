// Apache Axis 1.4 client for the prefront WebService, compiled together with the stubs that
// `WSDL2Java` generates from the gateway's ?wsdl (package prefront.axis). Used by
// tests/soap_toolkits.rs:
//   java -cp <axis jars> org.apache.axis.wsdl.WSDL2Java -o gen -p prefront.axis <wsdl-url>
//   javac -cp <axis jars> -d classes gen/prefront/axis/*.java AxisClient.java
//   java -cp classes:<axis jars> AxisClient <endpoint-url> <calls-file>
//
// <calls-file>: one call a line, `<operation> TAB <soap version> TAB <json-param>` (UTF-8; Axis
// 1.4 speaks SOAP 1.1 only, so the version must be 1.1). getPatientInfo, hisRefun and delete are
// called through the generated methods by name, anything else by reflection. Prints each
// operation's `return` string, one a line, as UTF-8, nothing else.
import java.io.PrintStream;
import java.lang.reflect.InvocationTargetException;
import java.net.URL;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;

import prefront.axis.PrefrontWebService_PortType;
import prefront.axis.PrefrontWebService_ServiceLocator;

public class AxisClient {
    public static void main(String[] args) throws Exception {
        if (args.length != 2) {
            System.err.println("usage: AxisClient <endpoint-url> <calls-file>");
            System.exit(2);
        }
        PrefrontWebService_PortType port =
            new PrefrontWebService_ServiceLocator().getPrefrontWebServicePort(new URL(args[0]));
        ((org.apache.axis.client.Stub) port).setTimeout(15000);
        PrintStream out = new PrintStream(System.out, true, StandardCharsets.UTF_8);
        for (String line : Files.readAllLines(Paths.get(args[1]), StandardCharsets.UTF_8)) {
            if (line.isEmpty()) {
                continue;
            }
            String[] f = line.split("\t", 3);
            if (!f[1].equals("1.1")) {
                throw new IllegalArgumentException("Axis 1.4 speaks SOAP 1.1 only: " + line);
            }
            String op = f[0], param = f[2], ret;
            switch (op) {
                case "getPatientInfo": ret = port.getPatientInfo(param); break;
                case "hisRefun": ret = port.hisRefun(param); break;
                case "delete": ret = port.delete(param); break;
                default:
                    try {
                        ret = (String) PrefrontWebService_PortType.class
                            .getMethod(op, String.class).invoke(port, param);
                    } catch (InvocationTargetException e) {
                        throw (Exception) e.getCause();
                    }
            }
            // How Axis wrote the request: 𠮷 (U+20BB7) goes out as a surrogate pair of references.
            String sent = ((org.apache.axis.client.Stub) port)._getCall().getMessageContext()
                .getRequestMessage().getSOAPPartAsString();
            String pair = sent.contains("&#xD842;&#xDFB7;") ? "; the request wrote U+20BB7 as &#xD842;&#xDFB7;" : "";
            System.err.println(op + " (SOAP 1.1): returned " + (ret == null ? "null" : ret.length() + " chars") + pair);
            out.println(ret);
        }
        out.flush();
    }
}
