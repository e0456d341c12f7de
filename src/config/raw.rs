//! The configuration file exactly as written: serde structs, every field optional where the file
//! may leave it out. `validate/` turns this into the typed, complete `Config`.
//!
//! The structs are also the schema: `table_keys` reads the keys each table may hold from them,
//! so the unknown-key report cannot drift from what serde accepts.

use serde::de::{DeserializeOwned, Visitor};
use serde::Deserialize;

/// Unknown top-level tables are reported (all of them, with lines) by the unknown-key walk in
/// `validate/keys.rs`, which then takes them out; serde must not stop at the first.
#[derive(Debug, Default, Deserialize)]
pub struct RawConfig {
    pub his_listener: Option<RawListener>,
    pub cloud_listener: Option<RawListener>,
    pub files_listener: Option<RawFilesListener>,
    pub admin: Option<RawAdmin>,
    pub cloud: Option<RawCloud>,
    pub his: Option<RawHis>,
    pub pacs: Option<RawPacs>,
    pub buffer: Option<RawBuffer>,
    pub trail: Option<RawTrail>,
    pub auth: Option<RawAuth>,
    pub log: Option<RawLog>,
    /// `[[hospital]]`: one per `hospitalId` behind this box (a county's 医共体).
    #[serde(default)]
    pub hospital: Vec<RawHospital>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    pub listen: Option<String>,
    pub allow: Option<Vec<String>>,
    pub trusted_proxies: Option<Vec<String>>,
    pub max_body: Option<String>,
    pub tls_cert: Option<String>,
    pub tls_key: Option<String>,
    pub client_ca: Option<String>,
    pub allowed_client_names: Option<Vec<String>>,
    pub public_url: Option<String>,
    pub max_connections: Option<usize>,
    pub max_connections_per_peer: Option<usize>,
    pub idle_timeout: Option<String>,
}

/// `[files_listener]`: `/files/<token>` for patients' phones. A listener's keys less those
/// that make no sense where only sealed links are served (no bodies, no client certificates).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFilesListener {
    pub listen: Option<String>,
    pub allow: Option<Vec<String>>,
    pub trusted_proxies: Option<Vec<String>>,
    pub tls_cert: Option<String>,
    pub tls_key: Option<String>,
    pub public_url: Option<String>,
    pub max_connections: Option<usize>,
    pub max_connections_per_peer: Option<usize>,
    pub idle_timeout: Option<String>,
}

impl From<RawFilesListener> for RawListener {
    fn from(f: RawFilesListener) -> RawListener {
        RawListener {
            listen: f.listen,
            allow: f.allow,
            trusted_proxies: f.trusted_proxies,
            tls_cert: f.tls_cert,
            tls_key: f.tls_key,
            public_url: f.public_url,
            max_connections: f.max_connections,
            max_connections_per_peer: f.max_connections_per_peer,
            idle_timeout: f.idle_timeout,
            ..RawListener::default()
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub listen: Option<String>,
    pub allow: Option<Vec<String>>,
    pub token_file: Option<String>,
    pub vrrp_state_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTrail {
    pub enabled: Option<bool>,
    pub path: Option<String>,
    pub max_age: Option<String>,
    pub max_bytes: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCloud {
    pub base_url: Option<String>,
    pub ca: Option<String>,
    pub timeout_ms: Option<u64>,
    pub connect_timeout_ms: Option<u64>,
    pub max_response: Option<String>,
    pub pin_ca: Option<bool>,
    pub client_cert: Option<String>,
    pub client_key: Option<String>,
    /// `http://host:port` of an HTTP CONNECT proxy the cloud link goes through.
    pub proxy: Option<String>,
    /// One line `user:password` for the proxy (read at load, never logged).
    pub proxy_auth_file: Option<String>,
    #[serde(default)]
    pub route: Vec<RawCloudRoute>,
}

/// A `[[cloud.route]]`: per-interface choices for HIS → cloud calls.
#[derive(Debug, Default, Deserialize)]
pub struct RawCloudRoute {
    pub path: Option<String>,
    pub delivery: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHis {
    #[serde(flatten)]
    pub default: RawRoute,
    /// A struct of its own rather than fields here: serde does not tell the field names of a
    /// struct with a flattened field, and `table_keys` needs them.
    #[serde(flatten)]
    pub own: RawHisOwn,
}

/// The keys of `[his]` that are not a route's.
#[derive(Debug, Default, Deserialize)]
pub struct RawHisOwn {
    pub max_response: Option<String>,
    pub max_file_response: Option<String>,
    #[serde(default)]
    pub route: Vec<RawRoute>,
}

/// A `[[hospital]]`: its own HIS (shaped like `[his]`, so a key added there is a key here too),
/// its own PACS template and its own `[[hospital.route]]` overrides.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHospital {
    pub id: Option<String>,
    pub his: Option<RawHis>,
    pub dcm_url: Option<String>,
    #[serde(default)]
    pub route: Vec<RawRoute>,
}

/// One way to reach the HIS: the `[his]` default or a `[[his.route]]` override.
#[derive(Debug, Default, Deserialize)]
pub struct RawRoute {
    /// Only meaningful in `[[his.route]]`.
    pub name: Option<String>,
    pub kind: Option<String>,
    pub url: Option<String>,
    pub operation: Option<String>,
    pub namespace: Option<String>,
    pub soap_version: Option<String>,
    pub param: Option<String>,
    pub soap_action: Option<String>,
    pub timeout_ms: Option<u64>,
    pub delivery: Option<String>,
    pub param_name: Option<String>,
    pub charset: Option<String>,
    pub arrays: Option<Vec<String>>,
    pub args: Option<std::collections::BTreeMap<String, String>>,
    pub qualified: Option<bool>,
    /// One line `user:password`: HTTP basic auth towards the HIS.
    pub basic_auth_file: Option<String>,
    /// One line: `Authorization: Bearer <token>` towards the HIS.
    pub bearer_token_file: Option<String>,
    /// Fixed headers sent on every call of the route (not secrets).
    pub headers: Option<std::collections::BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    pub shared_secret: Option<String>,
    pub shared_secret_file: Option<String>,
    pub max_skew: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPacs {
    pub dcm_url: Option<String>,
    pub internal_hosts: Option<Vec<String>>,
    pub link_ttl: Option<String>,
    pub link_key: Option<String>,
    pub link_key_file: Option<String>,
    pub rewrite_fields: Option<Vec<String>>,
    pub read_timeout: Option<String>,
    pub connect_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBuffer {
    pub path: Option<String>,
    pub max_bytes: Option<String>,
    pub ttl: Option<String>,
    pub max_attempts: Option<u32>,
    pub result_ttl: Option<String>,
    pub dead_ttl: Option<String>,
    pub retry_min: Option<String>,
    pub retry_max: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub level: Option<String>,
}

/// The keys the table at `table` may hold (`""` for the top level; `his.route` for every
/// `[[his.route]]`), read from the structs above; `None` for a table whose keys are free
/// (`args`) or one the file has no place for.
pub fn table_keys(table: &str) -> Option<Vec<&'static str>> {
    let keys = match table {
        "" => keys_of::<RawConfig>(),
        "his_listener" | "cloud_listener" => keys_of::<RawListener>(),
        "files_listener" => keys_of::<RawFilesListener>(),
        "admin" => keys_of::<RawAdmin>(),
        "cloud" => keys_of::<RawCloud>(),
        "cloud.route" => keys_of::<RawCloudRoute>(),
        // `name` is only meaningful in a `[[his.route]]`.
        "his" => {
            let route = keys_of::<RawRoute>().iter().filter(|k| **k != "name");
            return Some(route.chain(keys_of::<RawHisOwn>()).copied().collect());
        }
        "his.route" => keys_of::<RawRoute>(),
        "hospital" => keys_of::<RawHospital>(),
        // A hospital's `his` has the keys of `[his]`: `validate/hospital.rs` says which of them
        // belong to `[his]` alone.
        "hospital.his" => return table_keys("his"),
        "hospital.route" | "hospital.his.route" => keys_of::<RawRoute>(),
        "pacs" => keys_of::<RawPacs>(),
        "buffer" => keys_of::<RawBuffer>(),
        "trail" => keys_of::<RawTrail>(),
        "auth" => keys_of::<RawAuth>(),
        "log" => keys_of::<RawLog>(),
        _ => return None,
    };
    Some(keys.to_vec())
}

/// The field names `T`'s derived `Deserialize` hands to `deserialize_struct` (none for a struct
/// with a flattened field: serde reads those as a map).
fn keys_of<T: DeserializeOwned>() -> &'static [&'static str] {
    /// A deserializer that only notes the field names it is asked for.
    struct FieldNames<'a>(&'a mut &'static [&'static str]);

    impl<'de> serde::Deserializer<'de> for FieldNames<'_> {
        type Error = serde::de::value::Error;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(serde::de::Error::custom("not a struct"))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(serde::de::Error::custom("field names noted"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
            ignored_any
        }
    }

    let mut fields: &'static [&'static str] = &[];
    // Always an error: the point is the names noted on the way.
    let _ = T::deserialize(FieldNames(&mut fields));
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every section of the file has its keys, and the flattened `[his]` has a route's keys
    /// (but `name`) and its own.
    #[test]
    fn every_table_has_its_keys_from_the_structs() {
        let top = table_keys("").expect("the top level");
        assert_eq!(
            top,
            [
                "his_listener",
                "cloud_listener",
                "files_listener",
                "admin",
                "cloud",
                "his",
                "pacs",
                "buffer",
                "trail",
                "auth",
                "log",
                "hospital"
            ]
        );
        for section in top {
            let keys = table_keys(section).unwrap_or_default();
            assert!(!keys.is_empty(), "[{section}] has no keys");
        }
        let his = table_keys("his").expect("[his]");
        for k in [
            "url",
            "kind",
            "qualified",
            "max_response",
            "max_file_response",
            "route",
        ] {
            assert!(his.contains(&k), "[his] {k}");
        }
        assert!(!his.contains(&"name"));
        assert!(table_keys("his.route")
            .expect("[[his.route]]")
            .contains(&"name"));
        assert_eq!(table_keys("cloud.route"), Some(vec!["path", "delivery"]));
        assert!(table_keys("his_listener")
            .expect("listener")
            .contains(&"max_connections_per_peer"));
        let files = table_keys("files_listener").expect("[files_listener]");
        for k in [
            "listen",
            "allow",
            "tls_cert",
            "tls_key",
            "public_url",
            "idle_timeout",
        ] {
            assert!(files.contains(&k), "[files_listener] {k}");
        }
        for k in ["max_body", "client_ca", "allowed_client_names"] {
            assert!(!files.contains(&k), "[files_listener] has no {k}");
        }
        assert_eq!(table_keys("his.args"), None);
        assert_eq!(
            table_keys("hospital"),
            Some(vec!["id", "his", "dcm_url", "route"])
        );
        assert_eq!(table_keys("hospital.his"), table_keys("his"));
        assert_eq!(table_keys("hospital.route"), table_keys("his.route"));
        assert_eq!(table_keys("hospital.args"), None);
    }
}
