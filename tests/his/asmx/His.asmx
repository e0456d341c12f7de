<%@ WebService Language="C#" Class="HisService" %>
// A .NET asmx HIS for tests/soap_his.rs, hosted by Mono's ASP.NET (fastcgi-mono-server4 behind
// nginx; xsp4 crashes on Debian 12's Mono, mono/mono#18500). The namespace has no trailing `/`,
// so .NET publishes soapAction="http://his.example.cn/ws/createCard" and refuses any other
// SOAPAction; its parameters are qualified. createCard(param) answers JSON echoing the exact
// param text it got and the request's SOAPAction, plus a name with 𠮷 (U+20BB7).
using System;
using System.Reflection;
using System.Text;
using System.Web;
using System.Web.Services;

[WebService(Namespace = "http://his.example.cn/ws")]
[WebServiceBinding(ConformsTo = WsiProfiles.BasicProfile1_1)]
public class HisService : WebService {
    [WebMethod]
    public string createCard(string param) {
        string action = HttpContext.Current.Request.Headers["SOAPAction"];
        return "{\"success\":true,\"msg\":\"成功\",\"code\":\"10001\",\"data\":{"
            + "\"toolkit\":" + Str("Mono " + MonoVersion() + " ASP.NET asmx")
            + ",\"param\":" + Str(param)
            + ",\"soapAction\":" + Str(action)
            + ",\"patientName\":\"𠮷野 张三\"}}";
    }

    // "6.8.0.105 (Debian …)": Mono's own version (Environment.Version is the CLR's, 4.0.30319).
    static string MonoVersion() {
        Type mono = Type.GetType("Mono.Runtime");
        if (mono == null) {
            return Environment.Version.ToString();
        }
        MethodInfo name = mono.GetMethod("GetDisplayName", BindingFlags.NonPublic | BindingFlags.Static);
        return name == null ? Environment.Version.ToString() : (string) name.Invoke(null, null);
    }

    // A JSON string literal (null as null).
    static string Str(string s) {
        if (s == null) {
            return "null";
        }
        StringBuilder b = new StringBuilder("\"");
        foreach (char c in s) {
            if (c == '"') {
                b.Append("\\\"");
            } else if (c == '\\') {
                b.Append("\\\\");
            } else if (c < ' ') {
                b.AppendFormat("\\u{0:x4}", (int) c);
            } else {
                b.Append(c);
            }
        }
        return b.Append('"').ToString();
    }
}
