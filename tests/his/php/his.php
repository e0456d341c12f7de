<?php
// A PHP HIS for tests/soap_his.rs: ext/soap's SoapServer in WSDL mode (document/literal wrapped,
// elementFormDefault qualified — what a PHP vendor's WSDL-first service looks like), run as the
// router script of PHP's built-in server:
//   php -S 127.0.0.1:<port> tests/his/php/his.php
// GET ...?wsdl answers his.wsdl with its address pointed at this server; POST is the service.
// createCard(param) answers JSON (UTF-8, unescaped) echoing the exact param text it got and the
// request's SOAPAction, plus a name with 𠮷 (U+20BB7) for the way back.
const WSDL = __DIR__ . '/his.wsdl';

if ($_SERVER['REQUEST_METHOD'] === 'GET') {
    $self = 'http://' . $_SERVER['HTTP_HOST'] . '/his';
    header('Content-Type: text/xml; charset=utf-8');
    echo str_replace('http://127.0.0.1:0/his', $self, file_get_contents(WSDL));
    return true;
}

function createCard($req) {
    $soapAction = $_SERVER['HTTP_SOAPACTION'] ?? ($_SERVER['CONTENT_TYPE'] ?? null);
    return ['return' => json_encode([
        'success' => true,
        'msg' => '成功',
        'code' => '10001',
        'data' => [
            'toolkit' => 'PHP ' . PHP_VERSION . ' SoapServer',
            'param' => $req->param,
            'soapAction' => $soapAction,
            'patientName' => '𠮷野 张三',
        ],
    ], JSON_UNESCAPED_UNICODE | JSON_UNESCAPED_SLASHES)];
}

$server = new SoapServer(WSDL, ['cache_wsdl' => WSDL_CACHE_NONE, 'encoding' => 'UTF-8']);
$server->addFunction('createCard');
$server->handle();
