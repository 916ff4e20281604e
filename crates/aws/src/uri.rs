//! [`AwsScheme`]: AWS Secrets Manager stores named by URI (the `serde`
//! feature).

use std::sync::Arc;

use credstore_core::config::ConfigContext;
use credstore_core::{async_trait, CredentialStore, Error, Result, StoreId, StoreScheme, StoreUri};

use crate::config::de::Fields;
use crate::AwsSettings;

/// Opens `aws-sm:` URIs into a [`crate::AwsStore`], with the
/// [`AwsSettings`] a config file gives: every setting is a parameter of the
/// same name.
///
/// | URI part | setting |
/// |---|---|
/// | the host | `region` (`aws-sm://eu-west-1`); `aws-sm:` alone takes the environment's |
/// | `id` | the store id (default `aws-secrets-manager`) |
/// | `region`, `endpoint`, `prefix`, `kms_key_id`, `timeout_ms`, `max_attempts`, `allow_insecure_http` | as in a config file |
///
/// The credentials come from the environment, as for a store of a config
/// file (the standard AWS chain: variables, profiles, instance roles); a
/// URI never holds them. A plain `http://` endpoint is taken only to a
/// loopback host unless `allow_insecure_http`. The values are checked when
/// the store opens, before any request, as a config file's are.
///
/// ```
/// use credstore_core::StoreUri;
/// use credstore_aws::AwsScheme;
///
/// let uri = StoreUri::parse("aws-sm://us-east-1?endpoint=http://127.0.0.1:5000&prefix=team-a")?;
/// let (id, settings) = AwsScheme::settings(uri)?;
/// assert_eq!((id.as_str(), settings.region.as_deref()), ("aws-secrets-manager", Some("us-east-1")));
/// assert_eq!(settings.endpoint.as_deref(), Some("http://127.0.0.1:5000"));
/// # Ok::<(), credstore_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct AwsScheme;

impl AwsScheme {
    /// The store id and the settings `uri` names, read without any I/O.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] on `uri` when it is not an `aws-sm:` URI,
    /// has a user, port or path, or names the region twice (host and
    /// `region`), or on `uri.{name}` for a parameter that is unknown or does
    /// not parse; [`Error::InvalidKey`] for an `id` that is not a store id;
    /// [`Error::Config`] naming the store for a plain-HTTP endpoint to a
    /// host that is not loopback.
    pub fn settings(mut uri: StoreUri) -> Result<(StoreId, AwsSettings)> {
        if uri.scheme() != "aws-sm" {
            return Err(invalid(format!("{}: is not an aws-sm: URI", uri.scheme())));
        }
        if uri.username().is_some() || uri.port().is_some() || !matches!(uri.path(), "" | "/") {
            return Err(invalid(
                "an aws-sm: URI names a region and parameters only: aws-sm://us-east-1?prefix=team".into(),
            ));
        }
        let host = uri.host().map(str::to_owned);
        let region = match (host, uri.take("region")) {
            (Some(_), Some(_)) => {
                return Err(invalid("the region is given twice: as the host and as region=".into()))
            }
            (host, param) => host.or(param),
        };
        let id = uri.take_store_id(crate::KIND.as_str())?;
        let fields = Fields {
            region,
            endpoint: uri.take("endpoint"),
            prefix: uri.take("prefix"),
            kms_key_id: uri.take("kms_key_id"),
            timeout_ms: uri.take_parsed("timeout_ms")?,
            max_attempts: uri.take_parsed("max_attempts")?,
            allow_insecure_http: uri.take_bool("allow_insecure_http")?.unwrap_or(false),
        };
        uri.finish()?;
        let settings = AwsSettings::try_from(fields).map_err(|reason| Error::config(&id, reason))?;
        Ok((id, settings))
    }
}

fn invalid(reason: String) -> Error {
    Error::InvalidInput { field: "uri".into(), reason }
}

#[async_trait]
impl StoreScheme for AwsScheme {
    fn schemes(&self) -> &[&'static str] {
        &["aws-sm"]
    }

    /// Opens the store as [`AwsSettings::open`] does.
    async fn open(&self, uri: StoreUri, ctx: &ConfigContext) -> Result<Arc<dyn CredentialStore>> {
        let (id, settings) = Self::settings(uri)?;
        Ok(Arc::new(settings.open(id, ctx).await?))
    }
}
