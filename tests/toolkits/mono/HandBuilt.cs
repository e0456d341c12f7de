// A hand-built .NET SOAP client as HIS vendors write them (no proxy: the envelope as a string,
// written through StreamWriter(…, Encoding.UTF8), which puts a UTF-8 BOM first). Used to capture
// tests/fixtures/soap/bom.xml (see the README there):
//   mcs -out:handbuilt.exe HandBuilt.cs && mono handbuilt.exe <endpoint-url> <json-param>
// Prints the answer body.
using System;
using System.IO;
using System.Net;
using System.Security;
using System.Text;

class HandBuilt {
    static int Main(string[] args) {
        if (args.Length != 2) {
            Console.Error.WriteLine("usage: handbuilt.exe <endpoint-url> <json-param>");
            return 2;
        }
        string envelope = "<?xml version=\"1.0\" encoding=\"utf-8\"?>"
            + "<soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\">"
            + "<soap:Body><getPatientInfo xmlns=\"http://webservice.prefront/\"><param xmlns=\"\">"
            + SecurityElement.Escape(args[1])
            + "</param></getPatientInfo></soap:Body></soap:Envelope>";
        HttpWebRequest req = (HttpWebRequest) WebRequest.Create(args[0]);
        req.Method = "POST";
        req.ContentType = "text/xml; charset=utf-8";
        req.Headers.Add("SOAPAction", "\"\"");
        req.Timeout = 15000;
        using (StreamWriter w = new StreamWriter(req.GetRequestStream(), Encoding.UTF8)) {
            w.Write(envelope);
        }
        using (WebResponse resp = req.GetResponse())
        using (StreamReader r = new StreamReader(resp.GetResponseStream(), Encoding.UTF8)) {
            Console.WriteLine(r.ReadToEnd());
        }
        return 0;
    }
}
