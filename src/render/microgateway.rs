//! The WSO2 API Microgateway 3.x's bodies (the `microgateway` format): its `fault` wrapper, its
//! `apiNotFoundService`'s unwrapped status report and its resource templates' key-type refusal;
//! which entry gets which is [`formats::microgateway`]'s decision.

use serde::Serialize;

use super::{status_report, to_json, Resolved};
use crate::catalogue::{formats, FaultId};

#[derive(Serialize)]
struct MicrogatewayBody<'a> {
    fault: MicrogatewayFault<'a>,
}

#[derive(Serialize)]
struct MicrogatewayFault<'a> {
    code: MicrogatewayCode,
    message: &'a str,
    description: &'a str,
}

/// The Microgateway writes the codes of backend failures as strings (`"101503"`) and its own
/// (authentication, throttling) as numbers (`900900`), as its documentation shows them.
#[derive(Serialize)]
#[serde(untagged)]
enum MicrogatewayCode {
    Text(String),
    Number(u32),
}

/// Its resource templates' refusal of a key type the API has no endpoint for.
#[derive(Serialize)]
struct MicrogatewayKeyTypeBody<'a> {
    #[serde(rename = "ERROR_CODE")]
    code: String,
    #[serde(rename = "ERROR_MESSAGE")]
    message: &'a str,
}

/// Its `apiNotFoundService`'s answer: a numeric code, not wrapped in `fault`.
#[derive(Serialize)]
struct MicrogatewayStatusReport<'a> {
    code: u32,
    #[serde(rename = "type")]
    kind: &'static str,
    message: &'a str,
    description: &'a str,
}

pub(super) fn json(resolved: &Resolved<'_>, id: FaultId) -> String {
    let shape = formats::microgateway(id).map_or(formats::MicrogatewayShape::Fault, |mgw| mgw.shape);
    match shape {
        formats::MicrogatewayShape::KeyTypeError => {
            return to_json(&MicrogatewayKeyTypeBody {
                code: resolved.code.to_string(),
                message: &resolved.description,
            })
        }
        formats::MicrogatewayShape::StatusReport => {
            return to_json(&MicrogatewayStatusReport {
                code: resolved.code,
                kind: "Status report",
                message: &resolved.message,
                description: &resolved.description,
            })
        }
        formats::MicrogatewayShape::Fault => {}
    }
    let code = if status_report(id.spec().family) {
        MicrogatewayCode::Text(resolved.code.to_string())
    } else {
        MicrogatewayCode::Number(resolved.code)
    };
    to_json(&MicrogatewayBody {
        fault: MicrogatewayFault { code, message: &resolved.message, description: &resolved.description },
    })
}
