//! The ids of a request's path and the namespace they make: the rules
//! every route, the config's token scopes and `credstore migrate` check
//! tenants and projects against, written once.
//!
//! Store ids and credential keys follow core's id rule
//! ([`validate_id`]): 1 to 255 bytes of `[a-zA-Z0-9-_.]`. A tenant or
//! project id follows it too and may not be `.` or `..`: those are
//! dot-segments (RFC 3986 §5.2.4) that clients remove from a URL. The
//! namespace of a tenant's project in every store is `{tenantId}/{projectId}`
//! (core's [`Namespace`]); two valid ids make at most 511 bytes, within
//! every store's cap of 512.

use credstore_core::{validate_id, Error as StoreError, Namespace, NamespaceError, StoreId};

/// The pattern of core's ids (credential keys, metadata keys, store ids):
/// 1 to 255 characters of `[a-zA-Z0-9-_.]`.
pub(crate) const ID_PATTERN: &str = r"^[a-zA-Z0-9_.-]+$";

/// The pattern of an id in a path: [`ID_PATTERN`] less `.` and `..`.
pub(crate) const PATH_ID_PATTERN: &str = r"^(?:[a-zA-Z0-9_.-]*[a-zA-Z0-9_-][a-zA-Z0-9_.-]*|\.{3,})$";

/// [`PATH_ID_PATTERN`] and the length of an id, in words.
pub(crate) const PATH_ID_RULE: &str =
    "1 to 255 characters of `[a-zA-Z0-9-_.]`, not `.` or `..` (dot-segments, which a client removes from a URL)";

/// Why ids make no namespace.
#[derive(Debug, thiserror::Error)]
pub(crate) enum IdError {
    /// `field` breaks its rule (a 422 naming it in an answer).
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The field the rule is about: `tenantId`, `projectId`, both.
        field: &'static str,
        /// The rule broken.
        reason: String,
    },
    /// Any other error of core's namespace rules, as the store error it is.
    #[error(transparent)]
    Store(StoreError),
}

/// Checks a tenant or project id (and token scopes in the config): one
/// segment of a [`Namespace`], that is the id pattern
/// `^[a-zA-Z0-9\-_.]+$`, 1 to 255 bytes, and not `.` or `..`.
///
/// # Errors
/// [`IdError::Invalid`] naming `field` and the rule.
pub(crate) fn check_scope_id(field: &'static str, id: &str) -> Result<(), IdError> {
    validate_id(id).map_err(|e| IdError::Invalid { field, reason: e.to_string() })?;
    if id == "." || id == ".." {
        return Err(IdError::Invalid { field, reason: "must not be '.' or '..'".into() });
    }
    Ok(())
}

/// The namespace of a tenant's project in every store: `{tenant}/{project}`,
/// built with core's [`Namespace`] after each id passed
/// [`check_scope_id`].
///
/// # Errors
/// [`IdError::Invalid`] naming `tenantId` or `projectId` and the rule.
pub(crate) fn project_namespace(tenant: &str, project: &str) -> Result<Namespace, IdError> {
    check_scope_id("tenantId", tenant)?;
    check_scope_id("projectId", project)?;
    let mut ns = String::with_capacity(tenant.len() + 1 + project.len());
    ns.push_str(tenant);
    ns.push('/');
    ns.push_str(project);
    Namespace::new(ns).map_err(|e| namespace_error(e, None))
}

/// The [`IdError`] of an [`StoreError::InvalidNamespace`] of a project
/// namespace: a bad segment names `tenantId` or `projectId`; a namespace
/// longer than `store` holds names both, with the store's cap.
pub(crate) fn namespace_error(err: StoreError, store: Option<&StoreId>) -> IdError {
    let StoreError::InvalidNamespace { shown, reason } = &err else { return IdError::Store(err) };
    let field = |index: &usize| if *index == 0 { "tenantId" } else { "projectId" };
    let (field, reason) = match reason {
        NamespaceError::Segment { index, reason } => (field(index), reason.to_string()),
        NamespaceError::DotSegment { index, .. } => (field(index), "must not be '.' or '..'".to_owned()),
        NamespaceError::TooLong { len, max } => {
            let store = store.map(|s| format!(" of store '{s}'")).unwrap_or_default();
            let reason = format!(
                "together they make the namespace {shown} of {len} bytes; the namespaces{store} hold at most \
                 {max} bytes"
            );
            ("tenantId and projectId", reason)
        }
        _ => return IdError::Store(err),
    };
    IdError::Invalid { field, reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_ids() {
        assert!(check_scope_id("tenantId", "tenant_123").is_ok());
        for bad in ["", ".", "..", "a/b", "a b", &"x".repeat(256)] {
            let e = check_scope_id("tenantId", bad).unwrap_err();
            assert!(matches!(e, IdError::Invalid { field: "tenantId", .. }), "{bad:?}: {e:?}");
        }
    }

    #[test]
    fn project_namespaces() {
        assert_eq!(
            project_namespace("tenant_123", "project_456").unwrap().as_str(),
            "tenant_123/project_456"
        );
        let e = project_namespace("..", "p").unwrap_err();
        assert!(
            matches!(e, IdError::Invalid { .. }) && e.to_string().starts_with("invalid tenantId:"),
            "{e}"
        );
        let e = project_namespace("t", "a b").unwrap_err();
        assert!(
            matches!(e, IdError::Invalid { .. }) && e.to_string().starts_with("invalid projectId:"),
            "{e}"
        );
        let longest = project_namespace(&"t".repeat(255), &"p".repeat(255)).unwrap();
        assert_eq!(longest.as_str().len(), 511, "every pair of valid ids fits core's cap");
        let too_long = longest.check_len(300).unwrap_err();
        let e = namespace_error(too_long, Some(&StoreId::new("aws").unwrap())).to_string();
        assert!(e.starts_with("invalid tenantId and projectId:"), "{e}");
        assert!(e.contains("511 bytes") && e.contains("store 'aws' hold at most 300"), "{e}");
    }
}
