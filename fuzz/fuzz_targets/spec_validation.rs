//! Spec validation: any JSON that deserializes as an `SmtpSettingsSpec` (what the schema could admit and more)
//! goes through `validate` with the strict policy and the references it names present, empty or binary —
//! it must never panic, and every refusal must carry a message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smtp_operator::api::SmtpSettingsSpec;
use smtp_operator::policy;
use smtp_operator::validate::{self, RefObject, Referenced, SecurityPolicy};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, json)) = data.split_first() else { return };
    let Ok(spec) = serde_json::from_slice::<SmtpSettingsSpec>(json) else { return };
    let mut referenced = Referenced::default();
    for r in validate::references(&spec) {
        let value = match mode % 3 {
            0 => b"value".to_vec(),
            1 => vec![],
            _ => json.to_vec(),
        };
        let obj = referenced.objects.entry((r.kind, r.name.clone())).or_insert_with(RefObject::default);
        obj.data.insert(r.key.clone(), value);
        if mode & 4 != 0 {
            obj.annotations.insert(policy::ALLOWED_SERVERS_ANNOTATION.into(), String::from_utf8_lossy(json).into_owned());
        }
    }
    let options = SecurityPolicy {
        allowed_ports: vec![25, 465, 587, 2525],
        allowed_token_ports: vec![443],
        denied: policy::default_denied(),
        require_secret_binding: mode & 8 != 0,
        ..Default::default()
    };
    if let Err(invalid) = validate::validate(&spec, "ns", &referenced, &options) {
        assert!(!invalid.message.is_empty(), "{:?} without a message", invalid.reason);
    }
});
