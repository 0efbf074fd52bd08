//! Access and self-subject reviews: answered from RBAC, never stored.

use serde_json::{Value, json};

use super::{Res, Shared, now};
use crate::auth::UserInfo;
use crate::error::ApiError;
use crate::rbac::{self};
use crate::resources::{AUTHORIZATION_GROUP, ResourceType};

/// `POST /apis/authorization.k8s.io/v1/{selfsubjectaccessreviews, subjectaccessreviews,
/// selfsubjectrulesreviews}`: answered from RBAC (everything allowed without it), never stored.
pub(super) fn access_review(
    shared: &Shared,
    user: &UserInfo,
    review: &str,
    content_type: &str,
    body: &[u8],
) -> Res<Value> {
    let mut obj: Value = if content_type.starts_with(crate::protobuf::CONTENT_TYPE) {
        crate::protobuf::decode(body).ok_or_else(|| ApiError::unsupported_media_type(content_type))?
    } else {
        serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("error decoding body: {e}")))?
    };
    let spec = obj.get("spec").cloned().unwrap_or_else(|| json!({}));
    let status = match review {
        "selfsubjectaccessreviews" | "subjectaccessreviews" => {
            let subject = if review == "subjectaccessreviews" {
                let strs = |k: &str| -> Vec<String> {
                    spec.get(k)
                        .and_then(Value::as_array)
                        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
                        .unwrap_or_default()
                };
                let username = spec.get("user").and_then(Value::as_str).unwrap_or("").to_string();
                let groups = strs("groups");
                if username.is_empty() && groups.is_empty() {
                    return Err(review_invalid(
                        "SubjectAccessReview",
                        "spec.user",
                        "Invalid value: \"\": at least one of user or group must be specified",
                    ));
                }
                UserInfo { username, uid: spec.get("uid").and_then(Value::as_str).unwrap_or("").to_string(), groups }
            } else {
                user.clone()
            };
            let kind = if review == "subjectaccessreviews" { "SubjectAccessReview" } else { "SelfSubjectAccessReview" };
            match (spec.get("resourceAttributes").is_some(), spec.get("nonResourceAttributes").is_some()) {
                (true, true) => {
                    return Err(review_invalid(
                        kind,
                        "spec.nonResourceAttributes",
                        "Invalid value: \"null\": cannot be specified in combination with resourceAttributes",
                    ));
                }
                (false, false) => {
                    return Err(review_invalid(
                        kind,
                        "spec.resourceAttributes",
                        "Invalid value: \"null\": exactly one of nonResourceAttributes or resourceAttributes must be specified",
                    ));
                }
                _ => {}
            }
            let a = rbac::review_attributes(&spec);
            let d = shared.authorize(&subject, &a)?;
            let mut st = json!({"allowed": d.allowed});
            if !d.reason.is_empty()
                && let Some(m) = st.as_object_mut()
            {
                m.insert("reason".into(), d.reason.into());
            }
            st
        }
        "selfsubjectrulesreviews" => {
            let ns = spec.get("namespace").and_then(Value::as_str).unwrap_or("");
            if shared.rbac {
                let s = shared.lock()?;
                rbac::rules_review(&s, shared.rbac_ids, user, ns)
            } else {
                json!({"resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
                    "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}], "incomplete": false})
            }
        }
        _ => return Err(ApiError::no_route(&format!("/apis/authorization.k8s.io/v1/{review}"))),
    };
    if let Some(m) = obj.as_object_mut() {
        m.insert("status".into(), status);
        m.entry("metadata").or_insert_with(|| json!({"creationTimestamp": null}));
    }
    Ok(obj)
}

/// 422 for an access review that asks nothing answerable.
fn review_invalid(kind: &str, field: &str, body: &str) -> ApiError {
    let rt = ResourceType {
        group: AUTHORIZATION_GROUP.into(),
        version: "v1".into(),
        plural: format!("{}s", kind.to_lowercase()),
        singular: kind.to_lowercase(),
        kind: kind.into(),
        namespaced: false,
        status_subresource: false,
        short_names: Vec::new(),
        categories: Vec::new(),
        custom: false,
        printer_columns: Vec::new(),
        schema: None,
    };
    ApiError::invalid_causes(&rt, "", &[(field.to_string(), "FieldValueInvalid", body.to_string())])
}

/// The answer to `POST /apis/authentication.k8s.io/v1/selfsubjectreviews`: the requesting
/// identity, as the real server returns it (201, `status.userInfo`). The request body is not
/// needed: a SelfSubjectReview has no spec.
pub(super) fn self_subject_review(user: &UserInfo) -> Value {
    json!({
        "kind": "SelfSubjectReview",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"creationTimestamp": now()},
        "status": {"userInfo": {"username": user.username, "uid": user.uid, "groups": user.groups}},
    })
}
