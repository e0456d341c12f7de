// JAX-WS RI client for the prefront WebService, compiled together with the stubs that `wsimport`
// generates from the gateway's ?wsdl (package prefront.client). Used by tests/soap_toolkits.rs:
//   java -jar /usr/share/java/jaxws-tools.jar -Xnocompile -keep -s gen -p prefront.client <wsdl-url>
//   javac -cp /usr/share/java/jaxws-rt.jar -d classes gen/prefront/client/*.java PrefrontClient.java
//   java -cp classes:/usr/share/java/jaxws-rt.jar PrefrontClient <wsdl-url> <endpoint> <op> <param-file>
//
// The JSON param is read from <param-file> as UTF-8 (a JVM decodes argv in the locale's charset,
// which is ASCII under a C locale). Prints the operation's `return` string on stdout as UTF-8,
// nothing else.
import java.io.PrintStream;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.net.URL;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.util.Map;
import javax.xml.ws.BindingProvider;

import prefront.client.PrefrontWebService;
import prefront.client.PrefrontWebService_Service;

public class PrefrontClient {
    public static void main(String[] args) throws Exception {
        if (args.length != 4) {
            System.err.println("usage: PrefrontClient <wsdl-url> <endpoint-url> <operation> <param-file>");
            System.exit(2);
        }
        String param = new String(Files.readAllBytes(Paths.get(args[3])), StandardCharsets.UTF_8);
        PrefrontWebService_Service service = new PrefrontWebService_Service(new URL(args[0]));
        PrefrontWebService port = service.getPrefrontWebServicePort();
        Map<String, Object> ctx = ((BindingProvider) port).getRequestContext();
        ctx.put(BindingProvider.ENDPOINT_ADDRESS_PROPERTY, args[1]);
        ctx.put("com.sun.xml.ws.connect.timeout", 5000);
        ctx.put("com.sun.xml.ws.request.timeout", 15000);
        Method op = PrefrontWebService.class.getMethod(args[2], String.class);
        Object ret;
        try {
            ret = op.invoke(port, param);
        } catch (InvocationTargetException e) {
            throw (Exception) e.getCause();
        }
        PrintStream out = new PrintStream(System.out, true, StandardCharsets.UTF_8);
        out.print(ret);
        out.flush();
    }
}
