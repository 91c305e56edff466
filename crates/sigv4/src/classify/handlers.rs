//! Request-time rules that data alone cannot express, named by the `handler` field of an
//! operation: DynamoDB batch/transact/PartiQL bodies, SQS queue URLs in the path, Secrets
//! Manager batch reads, KMS re-encryption, EKS tokens. S3's rules are in `s3`.

use serde_json::Value;

use super::data::OpData;
use super::dispatch::{Req, json_member};
use super::resources::{ArnCtx, MemberValue, sqs_queue_url};
use super::{ActionOnResources, Classification, ClassifyError, s3};

/// Whether the operation's handler reads the body (REST services only; the JSON and query
/// protocols always get theirs).
pub(crate) fn needs_body(op: &OpData) -> bool {
    op.handler.as_deref() == Some("s3") && s3::needs_body(op)
}

/// Adjusts member values before resources are derived.
pub(crate) fn prepare(req: &mut Req<'_>) -> Result<(), ClassifyError> {
    if req.op.handler.as_deref() == Some("sqs") {
        sqs_path_queue(req)?;
    }
    Ok(())
}

/// Applies the operation's handler to the generic classification.
pub(crate) fn apply(
    req: &Req<'_>,
    ctx: ArnCtx<'_>,
    cls: &mut Classification,
) -> Result<(), ClassifyError> {
    match req.op.handler.as_deref() {
        None | Some("sqs") => Ok(()),
        Some("s3") => s3::apply(req, ctx, cls),
        Some("dynamodb_batch") => dynamodb_batch(req, ctx, cls),
        Some("dynamodb_transact") => dynamodb_transact(req, ctx, cls),
        Some("dynamodb_partiql") => dynamodb_partiql(req, cls),
        Some("secretsmanager_batch") => secretsmanager_batch(req, ctx, cls),
        Some("kms_reencrypt") => kms_reencrypt(req, ctx, cls),
        Some("sts_caller_identity") => {
            cls.mints_credentials |= eks_token(req);
            Ok(())
        }
        Some(other) => Err(ClassifyError::Data(format!("unknown handler `{other}`"))),
    }
}

/// The JSON body, or `BodyRequired`.
fn body<'r>(req: &'r Req<'_>) -> Result<&'r Value, ClassifyError> {
    req.json
        .as_ref()
        .ok_or_else(|| ClassifyError::BodyRequired {
            operation: req.op.name.clone(),
        })
}

fn invalid(name: &str, v: &Value) -> ClassifyError {
    ClassifyError::InvalidParameter {
        name: name.to_owned(),
        value: v.to_string(),
    }
}

fn table_arn(ctx: ArnCtx<'_>, table: &str) -> String {
    if table.starts_with("arn:") {
        table.to_owned()
    } else {
        format!(
            "arn:{}:dynamodb:{}:{}:table/{table}",
            ctx.partition, ctx.region, ctx.account
        )
    }
}

/// Adds `resource` to `action`'s entry, creating it in first-seen order.
fn push(actions: &mut Vec<ActionOnResources>, action: &str, resource: String) {
    match actions.iter_mut().find(|a| a.action == action) {
        Some(a) => {
            if !a.resources.contains(&resource) {
                a.resources.push(resource);
            }
        }
        None => actions.push(ActionOnResources {
            action: action.to_owned(),
            resources: vec![resource],
        }),
    }
}

/// `BatchGetItem` / `BatchWriteItem`: the operation's action on every table in `RequestItems`.
fn dynamodb_batch(
    req: &Req<'_>,
    ctx: ArnCtx<'_>,
    cls: &mut Classification,
) -> Result<(), ClassifyError> {
    let items = body(req)?.get("RequestItems");
    let Some(Value::Object(tables)) = items else {
        return Err(invalid("RequestItems", items.unwrap_or(&Value::Null)));
    };
    if tables.is_empty() {
        return Err(invalid("RequestItems", &Value::Object(tables.clone())));
    }
    let mut actions = Vec::new();
    for table in tables.keys() {
        push(&mut actions, &req.op.action, table_arn(ctx, table));
    }
    cls.actions = actions;
    Ok(())
}

/// `TransactGetItems` / `TransactWriteItems`: per item, the item's own action on its table.
fn dynamodb_transact(
    req: &Req<'_>,
    ctx: ArnCtx<'_>,
    cls: &mut Classification,
) -> Result<(), ClassifyError> {
    let items = body(req)?.get("TransactItems");
    let Some(Value::Array(items)) = items else {
        return Err(invalid("TransactItems", items.unwrap_or(&Value::Null)));
    };
    if items.is_empty() {
        return Err(invalid("TransactItems", &Value::Array(Vec::new())));
    }
    let mut actions = Vec::new();
    for item in items {
        let Some(obj) = item.as_object().filter(|o| o.len() == 1) else {
            return Err(invalid("TransactItems", item));
        };
        let Some((kind, inner)) = obj.iter().next() else {
            return Err(invalid("TransactItems", item));
        };
        let action = match kind.as_str() {
            "Get" => "dynamodb:GetItem",
            "Put" => "dynamodb:PutItem",
            "Update" => "dynamodb:UpdateItem",
            "Delete" => "dynamodb:DeleteItem",
            "ConditionCheck" => "dynamodb:ConditionCheckItem",
            _ => return Err(invalid("TransactItems", item)),
        };
        let Some(Value::String(table)) = inner.get("TableName") else {
            return Err(invalid("TableName", inner));
        };
        push(&mut actions, action, table_arn(ctx, table));
    }
    cls.actions = actions;
    Ok(())
}

/// PartiQL: `dynamodb:PartiQL<Verb>` per statement. The table is inside the statement
/// text; rather than parse PartiQL, the resource is `*`.
fn dynamodb_partiql(req: &Req<'_>, cls: &mut Classification) -> Result<(), ClassifyError> {
    let body = body(req)?;
    let statements: Vec<&Value> = match req.op.name.as_str() {
        "ExecuteStatement" => vec![body.get("Statement").unwrap_or(&Value::Null)],
        "BatchExecuteStatement" | "ExecuteTransaction" => {
            let key = if req.op.name == "BatchExecuteStatement" {
                "Statements"
            } else {
                "TransactStatements"
            };
            match body.get(key) {
                Some(Value::Array(items)) if !items.is_empty() => items
                    .iter()
                    .map(|i| i.get("Statement").unwrap_or(&Value::Null))
                    .collect(),
                other => return Err(invalid(key, other.unwrap_or(&Value::Null))),
            }
        }
        _ => {
            return Err(ClassifyError::Data(format!(
                "`{}` is not PartiQL",
                req.op.name
            )));
        }
    };
    let mut actions = Vec::new();
    for s in statements {
        let Value::String(text) = s else {
            return Err(invalid("Statement", s));
        };
        let verb = text
            .trim_start()
            .split(|c: char| !c.is_ascii_alphabetic())
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        let action = match verb.as_str() {
            "SELECT" | "EXISTS" => "dynamodb:PartiQLSelect",
            "INSERT" => "dynamodb:PartiQLInsert",
            "UPDATE" => "dynamodb:PartiQLUpdate",
            "DELETE" => "dynamodb:PartiQLDelete",
            _ => return Err(invalid("Statement", s)),
        };
        push(&mut actions, action, "*".to_owned());
    }
    cls.actions = actions;
    Ok(())
}

/// Legacy SQS query requests post to the queue's own path instead of sending `QueueUrl`.
fn sqs_path_queue(req: &mut Req<'_>) -> Result<(), ClassifyError> {
    let path = req.input.path;
    if path == "/" || path.is_empty() || !req.op.mem.contains_key("QueueUrl") {
        return Ok(());
    }
    let decoded = super::route::decode(path)?;
    let from_path = sqs_queue_url(&decoded).ok_or_else(|| ClassifyError::InvalidParameter {
        name: "path".into(),
        value: path.to_owned(),
    })?;
    if let Some(MemberValue::One(url)) = req.member("QueueUrl")?
        && sqs_queue_url(&url).as_ref() != Some(&from_path)
    {
        return Err(ClassifyError::Ambiguous {
            first: format!("queue `{url}`"),
            second: format!("queue path `{path}`"),
        });
    }
    req.overrides
        .push(("QueueUrl".into(), MemberValue::One(decoded)));
    Ok(())
}

/// `BatchGetSecretValue` needs `GetSecretValue` on every secret it reads.
fn secretsmanager_batch(
    req: &Req<'_>,
    ctx: ArnCtx<'_>,
    cls: &mut Classification,
) -> Result<(), ClassifyError> {
    let ids = match json_member(body(req)?, "SecretIdList")? {
        Some(MemberValue::Many(ids)) if !ids.is_empty() => ids,
        _ => vec![],
    };
    let mut resources: Vec<String> = ids
        .iter()
        .map(|id| crate::classify::resources::secret_arn(id, ctx))
        .collect();
    if resources.is_empty() {
        // Selected by `Filters`: any secret.
        resources.push("*".into());
    }
    cls.actions.push(ActionOnResources {
        action: "secretsmanager:GetSecretValue".into(),
        resources,
    });
    Ok(())
}

/// `ReEncrypt` is `kms:ReEncryptFrom` on the source key and `kms:ReEncryptTo` on the
/// destination. Without `SourceKeyId` the source key is inside the ciphertext: `*`.
fn kms_reencrypt(
    req: &Req<'_>,
    ctx: ArnCtx<'_>,
    cls: &mut Classification,
) -> Result<(), ClassifyError> {
    let body = body(req)?;
    let key = |name: &str| -> Result<String, ClassifyError> {
        Ok(match json_member(body, name)? {
            Some(MemberValue::One(v)) if !v.is_empty() => {
                crate::classify::resources::kms_key(&v, ctx)
            }
            _ => "*".into(),
        })
    };
    cls.actions = vec![
        ActionOnResources {
            action: "kms:ReEncryptFrom".into(),
            resources: vec![key("SourceKeyId")?],
        },
        ActionOnResources {
            action: "kms:ReEncryptTo".into(),
            resources: vec![key("DestinationKeyId")?],
        },
    ];
    Ok(())
}

/// `aws eks get-token` presigns `sts:GetCallerIdentity` with an `x-k8s-aws-id` header:
/// a bearer token EKS checks with STS directly, which re-signing cannot serve.
fn eks_token(req: &Req<'_>) -> bool {
    req.input.headers.contains_key("x-k8s-aws-id")
        || req
            .query
            .keys()
            .any(|k| k.eq_ignore_ascii_case("x-k8s-aws-id"))
        || req
            .query
            .get("X-Amz-SignedHeaders")
            .ok()
            .flatten()
            .is_some_and(|h| {
                h.to_ascii_lowercase()
                    .split(';')
                    .any(|h| h == "x-k8s-aws-id")
            })
}
