//! Reading parameters and headers from a request, strictly: a value that decides the
//! operation or a resource must appear once, or classification fails.

use http::HeaderMap;

use super::ClassifyError;

/// Decoded `key=value` pairs of a query string or form body, in order.
#[derive(Debug, Default, Clone)]
pub(crate) struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// Parses `application/x-www-form-urlencoded` text (`+` is a space, as in AWS's parsers).
    pub(crate) fn parse(raw: &[u8]) -> Self {
        Params {
            pairs: form_urlencoded::parse(raw)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        }
    }

    /// Whether `raw`, read as a form, has `key`, without copying it (a JSON body is
    /// checked this way for a smuggled `Action`).
    pub(crate) fn form_has_key(raw: &[u8], key: &str) -> bool {
        form_urlencoded::parse(raw).any(|(k, _)| k == key)
    }

    /// Appends another set (query string plus form body).
    pub(crate) fn extend(&mut self, other: Params) {
        self.pairs.extend(other.pairs);
    }

    /// The value of `key`, an error if it appears more than once.
    pub(crate) fn get(&self, key: &str) -> Result<Option<&str>, ClassifyError> {
        let mut found = None;
        for (k, v) in &self.pairs {
            if k == key {
                if found.is_some() {
                    return Err(ClassifyError::DuplicateParameter {
                        name: key.to_owned(),
                    });
                }
                found = Some(v.as_str());
            }
        }
        Ok(found)
    }

    /// Every value of `key`, in order.
    pub(crate) fn get_all(&self, key: &str) -> Vec<String> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Whether `key` is present (any number of times).
    pub(crate) fn contains(&self, key: &str) -> bool {
        self.pairs.iter().any(|(k, _)| k == key)
    }

    /// All keys, in order, with repeats.
    /// The items of a flattened list member `prefix.1`, `prefix.2`, … (EC2's form; pass
    /// `Name.member` for the query protocol's), in index order; `None` if there are none.
    /// Every value is returned, so none can hide from the classification.
    pub(crate) fn list(&self, prefix: &str) -> Option<Vec<String>> {
        let mut items: Vec<(u64, &str)> = self
            .pairs
            .iter()
            .filter_map(|(k, v)| {
                let n = k.strip_prefix(prefix)?.strip_prefix('.')?;
                (!n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| n.parse().ok().map(|n| (n, v.as_str())))
                    .flatten()
            })
            .collect();
        if items.is_empty() {
            return None;
        }
        items.sort_by_key(|(n, _)| *n);
        Some(items.into_iter().map(|(_, v)| v.to_owned()).collect())
    }

    pub(crate) fn keys(&self) -> impl Iterator<Item = &str> {
        self.pairs.iter().map(|(k, _)| k.as_str())
    }

    /// The first key that appears more than once, if any.
    pub(crate) fn first_duplicate(&self) -> Option<&str> {
        let mut seen = std::collections::HashSet::new();
        self.keys().find(|k| !seen.insert(*k))
    }
}

/// The value of header `name`, an error if it appears more than once or is not text.
pub(crate) fn header<'h>(
    headers: &'h HeaderMap,
    name: &str,
) -> Result<Option<&'h str>, ClassifyError> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ClassifyError::DuplicateParameter {
            name: name.to_owned(),
        });
    }
    first
        .to_str()
        .map(Some)
        .map_err(|_| ClassifyError::Malformed {
            part: "header",
            reason: format!("`{name}` is not visible ascii"),
        })
}

/// The media type of `Content-Type`, lowercased, without parameters.
pub(crate) fn content_type(headers: &HeaderMap) -> Result<Option<String>, ClassifyError> {
    Ok(header(headers, "content-type")?.map(|v| {
        v.split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
    }))
}
