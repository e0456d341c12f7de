<?php
// PHP SoapClient (ext/soap, WSDL mode) for the prefront WebService. Used by tests/soap_toolkits.rs:
//   php client.php list <wsdl-url>
//       prints SoapClient::__getFunctions() for the served WSDL, one a line
//   php client.php call <wsdl-url> <endpoint-url> <calls-file>
//       <calls-file>: one call a line, `<operation> TAB <1.1|1.2> TAB <json-param>` (UTF-8).
//       Each call goes through a SoapClient built from <wsdl-url> (the gateway's ?wsdl) with
//       `location` = <endpoint-url> and that SOAP version; prints the operation's `return`
//       string, one a line, nothing else.
// `delete` is called by its name, $client->delete(...), as a PHP HIS vendor would write it.

function client($wsdl, $endpoint, $version) {
    return new SoapClient($wsdl, [
        'location' => $endpoint,
        'soap_version' => $version === '1.2' ? SOAP_1_2 : SOAP_1_1,
        'cache_wsdl' => WSDL_CACHE_NONE,
        'exceptions' => true,
        'connection_timeout' => 5,
        'encoding' => 'UTF-8',
        'trace' => true,
    ]);
}

ini_set('default_socket_timeout', '15');
$argv = $_SERVER['argv'];
if (count($argv) === 3 && $argv[1] === 'list') {
    $c = client($argv[2], null, '1.1');
    foreach ($c->__getFunctions() as $f) {
        echo $f, "\n";
    }
    exit(0);
}
if (count($argv) === 5 && $argv[1] === 'call') {
    [, , $wsdl, $endpoint, $file] = $argv;
    foreach (file($file, FILE_IGNORE_NEW_LINES | FILE_SKIP_EMPTY_LINES) as $line) {
        [$op, $version, $param] = explode("\t", $line, 3);
        $c = client($wsdl, $endpoint, $version);
        $args = ['param' => $param];
        try {
            $r = $op === 'delete' ? $c->delete($args) : $c->__soapCall($op, [$args]);
        } catch (SoapFault $f) {
            fwrite(STDERR, "$op (SOAP $version): SoapFault {$f->faultcode}: {$f->getMessage()}\n");
            fwrite(STDERR, "request headers:\n" . $c->__getLastRequestHeaders() . "\n");
            fwrite(STDERR, "request:\n" . $c->__getLastRequest() . "\nresponse:\n" . $c->__getLastResponse() . "\n");
            exit(1);
        }
        fwrite(STDERR, "$op (SOAP $version): " . strtok($c->__getLastRequestHeaders(), "\r") . "; "
            . implode('; ', preg_grep('/^(SOAPAction|Content-Type):/i', explode("\r\n", $c->__getLastRequestHeaders()))) . "\n");
        echo $r->return, "\n";
    }
    exit(0);
}
fwrite(STDERR, "usage: client.php list <wsdl-url> | call <wsdl-url> <endpoint-url> <calls-file>\n");
exit(2);
