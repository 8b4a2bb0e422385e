//! Push rules API: read the whole ruleset or one rule; add, remove, enable and change the
//! actions of rules.

use std::sync::Arc;

use ruma::api::client::push::{
    PushRule, delete_pushrule, get_pushrule, get_pushrule_actions, get_pushrule_enabled,
    get_pushrules_all, get_pushrules_global_scope, set_pushrule, set_pushrule_actions,
    set_pushrule_enabled,
};

use crate::api::ruma::Ruma;
use crate::error::{Error, Result};
use crate::push::rules::{insert_error, remove_error};
use crate::services::Services;

fn no_such_rule() -> Error {
    Error::not_found("No such push rule")
}

/// `GET /_matrix/client/v3/pushrules/`
pub async fn get_all(
    services: Arc<Services>,
    req: Ruma<get_pushrules_all::v3::Request>,
) -> Result<get_pushrules_all::v3::Response> {
    Ok(get_pushrules_all::v3::Response::new(
        services.push_rules.get(req.user_id()?)?,
    ))
}

/// `GET /_matrix/client/v3/pushrules/global/`
pub async fn get_global(
    services: Arc<Services>,
    req: Ruma<get_pushrules_global_scope::v3::Request>,
) -> Result<get_pushrules_global_scope::v3::Response> {
    Ok(get_pushrules_global_scope::v3::Response::new(
        services.push_rules.get(req.user_id()?)?,
    ))
}

/// `GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}`
pub async fn get(
    services: Arc<Services>,
    req: Ruma<get_pushrule::v3::Request>,
) -> Result<get_pushrule::v3::Response> {
    let ruleset = services.push_rules.get(req.user_id()?)?;
    let rule = ruleset
        .get(req.body.kind.clone(), &req.body.rule_id)
        .ok_or_else(no_such_rule)?;
    Ok(get_pushrule::v3::Response::new(PushRule::from(
        rule.to_owned(),
    )))
}

/// `PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}`
pub async fn set(
    services: Arc<Services>,
    req: Ruma<set_pushrule::v3::Request>,
) -> Result<set_pushrule::v3::Response> {
    let body = req.body.clone();
    services.push_rules.update(req.user_id()?, |ruleset| {
        ruleset
            .insert(body.rule, body.after.as_deref(), body.before.as_deref())
            .map_err(insert_error)
    })?;
    Ok(set_pushrule::v3::Response::new())
}

/// `DELETE /_matrix/client/v3/pushrules/global/{kind}/{ruleId}`
pub async fn delete(
    services: Arc<Services>,
    req: Ruma<delete_pushrule::v3::Request>,
) -> Result<delete_pushrule::v3::Response> {
    let body = &req.body;
    services.push_rules.update(req.user_id()?, |ruleset| {
        ruleset
            .remove(body.kind.clone(), &body.rule_id)
            .map_err(remove_error)
    })?;
    Ok(delete_pushrule::v3::Response::new())
}

/// `GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/enabled`
pub async fn get_enabled(
    services: Arc<Services>,
    req: Ruma<get_pushrule_enabled::v3::Request>,
) -> Result<get_pushrule_enabled::v3::Response> {
    let ruleset = services.push_rules.get(req.user_id()?)?;
    let rule = ruleset
        .get(req.body.kind.clone(), &req.body.rule_id)
        .ok_or_else(no_such_rule)?;
    Ok(get_pushrule_enabled::v3::Response::new(rule.enabled()))
}

/// `PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/enabled`
pub async fn set_enabled(
    services: Arc<Services>,
    req: Ruma<set_pushrule_enabled::v3::Request>,
) -> Result<set_pushrule_enabled::v3::Response> {
    let body = &req.body;
    services.push_rules.update(req.user_id()?, |ruleset| {
        ruleset
            .set_enabled(body.kind.clone(), &body.rule_id, body.enabled)
            .map_err(|_| no_such_rule())
    })?;
    Ok(set_pushrule_enabled::v3::Response::new())
}

/// `GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/actions`
pub async fn get_actions(
    services: Arc<Services>,
    req: Ruma<get_pushrule_actions::v3::Request>,
) -> Result<get_pushrule_actions::v3::Response> {
    let ruleset = services.push_rules.get(req.user_id()?)?;
    let rule = ruleset
        .get(req.body.kind.clone(), &req.body.rule_id)
        .ok_or_else(no_such_rule)?;
    Ok(get_pushrule_actions::v3::Response::new(
        rule.actions().to_vec(),
    ))
}

/// `PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/actions`
pub async fn set_actions(
    services: Arc<Services>,
    req: Ruma<set_pushrule_actions::v3::Request>,
) -> Result<set_pushrule_actions::v3::Response> {
    let body = &req.body;
    services.push_rules.update(req.user_id()?, |ruleset| {
        ruleset
            .set_actions(body.kind.clone(), &body.rule_id, body.actions.clone())
            .map_err(|_| no_such_rule())
    })?;
    Ok(set_pushrule_actions::v3::Response::new())
}
