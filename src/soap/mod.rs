//! SOAP: the WebService the HIS calls (`wsdl`), the envelopes both ways (`envelope`), and the
//! JSON ⇄ XML mapping for HIS routes with `param = "xml"` (`xmljson`). Pure functions over bytes.

pub mod charref;
pub mod envelope;
pub mod wsdl;
pub mod xmljson;
