// .NET (Mono) client for the prefront WebService, compiled together with the proxy that Mono's
// `wsdl` generates from the gateway's ?wsdl (namespace Prefront.Client). Used by
// tests/soap_toolkits.rs:
//   wsdl -nologo -namespace:Prefront.Client -out:Proxy.cs <wsdl-url>
//   mcs -out:client.exe -r:System.Web.Services.dll Proxy.cs MonoClient.cs
//   mono client.exe <endpoint-url> <calls-file>
//
// <calls-file>: one call a line, `<operation> TAB <1.1|1.2> TAB <json-param>` (UTF-8); the
// proxy's SoapVersion follows the second column. getPatientInfo, hisRefun and delete are called
// through the generated methods by name, anything else by reflection. Prints each operation's
// `return` string, one a line, as UTF-8, nothing else; how each request went out on stderr.
using System;
using System.IO;
using System.Net;
using System.Reflection;
using System.Text;
using System.Web.Services.Protocols;

class TracedProxy : Prefront.Client.PrefrontWebService {
    public HttpWebRequest Last;

    protected override WebRequest GetWebRequest(Uri uri) {
        WebRequest r = base.GetWebRequest(uri);
        Last = r as HttpWebRequest;
        return r;
    }
}

class MonoClient {
    static int Main(string[] args) {
        if (args.Length != 2) {
            Console.Error.WriteLine("usage: client.exe <endpoint-url> <calls-file>");
            return 2;
        }
        TracedProxy p = new TracedProxy();
        p.Url = args[0];
        p.Timeout = 15000;
        StreamWriter stdout = new StreamWriter(Console.OpenStandardOutput(), new UTF8Encoding(false));
        foreach (string line in File.ReadAllLines(args[1], Encoding.UTF8)) {
            if (line.Length == 0) {
                continue;
            }
            string[] f = line.Split(new char[] { '\t' }, 3);
            string op = f[0], version = f[1], param = f[2], ret;
            p.SoapVersion = version == "1.2" ? SoapProtocolVersion.Soap12 : SoapProtocolVersion.Soap11;
            switch (op) {
                case "getPatientInfo": ret = p.getPatientInfo(param); break;
                case "hisRefun": ret = p.hisRefun(param); break;
                case "delete": ret = p.delete(param); break;
                default:
                    try {
                        ret = (string) typeof(Prefront.Client.PrefrontWebService).GetMethod(op)
                            .Invoke(p, new object[] { param });
                    } catch (TargetInvocationException e) {
                        throw e.InnerException;
                    }
                    break;
            }
            Console.Error.WriteLine("{0} (SOAP {1}): Content-Type: {2}; SOAPAction: {3}", op, version,
                p.Last.ContentType, p.Last.Headers["SOAPAction"] ?? "(none)");
            stdout.WriteLine(ret);
        }
        stdout.Flush();
        return 0;
    }
}
