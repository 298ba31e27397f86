//! Group resolution: the membership strategies, with paged searches and
//! lookups batched into OR-filters of at most [`BATCH`] values.

use std::collections::{BTreeMap, HashSet};

use ldap3::{Scope, SearchEntry};

use super::{
    config::{DirectoryKind, Membership, Settings},
    escape::{filter_bytes, filter_value},
    guid::guid_to_string,
    pool::{Conn, OpError},
    Principal,
};

/// At most this many values in one OR-filter.
pub(crate) const BATCH: usize = 50;

/// AD's transitive membership matching rule.
const IN_CHAIN: &str = "1.2.840.113556.1.4.1941";

/// The attribute holding an entry's stable id.
pub(crate) fn id_attribute(kind: DirectoryKind) -> &'static str {
    match kind {
        DirectoryKind::ActiveDirectory => "objectGUID",
        DirectoryKind::OpenLdap => "entryUUID",
    }
}

/// The attribute that can be matched against a DN in a filter.
fn dn_attribute(kind: DirectoryKind) -> &'static str {
    match kind {
        DirectoryKind::ActiveDirectory => "distinguishedName",
        DirectoryKind::OpenLdap => "entryDN",
    }
}

/// The values of `name` (attribute names are case-insensitive).
pub(crate) fn attr<'e>(entry: &'e SearchEntry, name: &str) -> &'e [String] {
    entry
        .attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_slice())
        .unwrap_or(&[])
}

/// The first value of `name`.
pub(crate) fn first<'e>(entry: &'e SearchEntry, name: &str) -> Option<&'e str> {
    attr(entry, name).first().map(String::as_str)
}

/// Binary values of `name`. ldap3 files a value that happens to be valid
/// UTF-8 under `attrs`, so both maps are read.
pub(crate) fn bin_attr(entry: &SearchEntry, name: &str) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = entry
        .bin_attrs
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .flat_map(|(_, v)| v.iter().cloned())
        .collect();
    out.extend(attr(entry, name).iter().map(|s| s.as_bytes().to_vec()));
    out
}

/// The principal id of `entry` under `scheme`: the AD objectGUID or the
/// OpenLDAP entryUUID, the DN when neither is there.
pub(crate) fn principal_id(kind: DirectoryKind, scheme: &str, entry: &SearchEntry) -> String {
    let id = match kind {
        DirectoryKind::ActiveDirectory => bin_attr(entry, "objectGUID")
            .first()
            .and_then(|b| guid_to_string(b)),
        DirectoryKind::OpenLdap => first(entry, "entryUUID").map(str::to_owned),
    };
    format!("{scheme}://{}", id.unwrap_or_else(|| entry.dn.clone()))
}

/// Case-folded DN for cycle detection and de-duplication.
fn dn_key(dn: &str) -> String {
    dn.trim().to_lowercase()
}

/// Resolves the groups of the user `entry` (fetched with
/// [`user_attributes`]).
pub(crate) struct Resolver<'s> {
    settings: &'s Settings,
    found: BTreeMap<String, (String, Principal)>,
    truncated: bool,
}

/// Attributes of the user entry the strategies need.
pub(crate) fn user_attributes(settings: &Settings) -> Vec<String> {
    let mut attrs = Vec::new();
    match &settings.membership {
        Membership::MemberOf { attribute } => attrs.push(attribute.clone()),
        Membership::MemberUid { user_attribute, .. } => attrs.push(user_attribute.clone()),
        _ => {}
    }
    attrs
}

impl<'s> Resolver<'s> {
    pub(crate) fn new(settings: &'s Settings) -> Self {
        Self {
            settings,
            found: BTreeMap::new(),
            truncated: false,
        }
    }

    /// Records a group; `false` once the cap is reached.
    fn add(&mut self, entry: &SearchEntry) -> bool {
        let key = dn_key(&entry.dn);
        if self.found.contains_key(&key) {
            return true;
        }
        if self.found.len() >= self.settings.nested_groups.max_groups {
            self.truncated = true;
            return false;
        }
        let id = principal_id(self.settings.kind, self.settings.kind.group_scheme(), entry);
        let display_name = first(entry, &self.settings.group_name_attribute)
            .map(str::to_owned)
            .unwrap_or_else(|| entry.dn.clone());
        self.found
            .insert(key, (entry.dn.clone(), Principal { id, display_name }));
        true
    }

    /// Runs the configured strategy.
    pub(crate) async fn resolve(
        mut self,
        conn: &mut Conn,
        user: &SearchEntry,
    ) -> Result<Vec<Principal>, OpError> {
        let s = self.settings;
        let class = filter_value(&s.group_object_class);
        match &s.membership {
            Membership::MemberOf { attribute } => {
                let dns: Vec<String> = attr(user, attribute).to_vec();
                let follow = s.nested_groups.enabled.then_some(attribute.as_str());
                self.walk_by_dn(conn, dns, follow).await?;
            }
            Membership::Member { attribute } => {
                let filter = format!(
                    "(&(objectClass={class})({}={}))",
                    attribute,
                    filter_value(&user.dn)
                );
                let entries = conn
                    .search_paged(&s.group_search_base, Scope::Subtree, &filter, &self.attrs())
                    .await?;
                let mut level: Vec<String> = Vec::new();
                for e in &entries {
                    if !self.found.contains_key(&dn_key(&e.dn)) && self.add(e) {
                        level.push(e.dn.clone());
                    }
                }
                if s.nested_groups.enabled {
                    self.walk_up_member(conn, attribute, level).await?;
                }
            }
            Membership::MemberUid {
                attribute,
                user_attribute,
            } => {
                if let Some(uid) = first(user, user_attribute) {
                    let filter = format!(
                        "(&(objectClass={class})({attribute}={}))",
                        filter_value(uid)
                    );
                    let entries = conn
                        .search_paged(&s.group_search_base, Scope::Subtree, &filter, &self.attrs())
                        .await?;
                    for e in &entries {
                        self.add(e);
                    }
                }
            }
            Membership::InChain => {
                let filter = format!(
                    "(&(objectClass={class})(member:{IN_CHAIN}:={}))",
                    filter_value(&user.dn)
                );
                let entries = conn
                    .search_paged(&s.group_search_base, Scope::Subtree, &filter, &self.attrs())
                    .await?;
                for e in &entries {
                    self.add(e);
                }
            }
            Membership::TokenGroups => {
                let (entries, _) = conn
                    .search_small(
                        &user.dn,
                        Scope::Base,
                        "(objectClass=*)",
                        &["tokenGroups"],
                        1,
                    )
                    .await?;
                let sids = entries
                    .first()
                    .map(|e| bin_attr(e, "tokenGroups"))
                    .unwrap_or_default();
                for chunk in sids.chunks(BATCH) {
                    let mut filter = String::from("(|");
                    for sid in chunk {
                        filter.push_str(&format!("(objectSid={})", filter_bytes(sid)));
                    }
                    filter.push(')');
                    let entries = conn
                        .search_paged(&s.group_search_base, Scope::Subtree, &filter, &self.attrs())
                        .await?;
                    for e in &entries {
                        self.add(e);
                    }
                }
            }
        }
        if self.truncated {
            tracing::warn!(
                auth.provider = %s.name,
                user.dn = %user.dn,
                cap = s.nested_groups.max_groups,
                "the user is in more groups than nestedGroups.maxGroups: the rest are ignored"
            );
        }
        let mut groups: Vec<Principal> = self.found.into_values().map(|(_, p)| p).collect();
        groups.sort();
        groups.dedup_by(|a, b| a.id == b.id);
        Ok(groups)
    }

    fn attrs(&self) -> Vec<&'s str> {
        let s: &'s Settings = self.settings;
        vec![id_attribute(s.kind), s.group_name_attribute.as_str()]
    }

    /// `memberOf`: looks the group DNs up (batched), and with `follow` reads
    /// that attribute on each group to go one level up, until no new group
    /// appears, `maxDepth` levels were walked or `maxGroups` is reached.
    async fn walk_by_dn(
        &mut self,
        conn: &mut Conn,
        mut level: Vec<String>,
        follow: Option<&str>,
    ) -> Result<(), OpError> {
        let s = self.settings;
        let mut attrs: Vec<&str> = self.attrs();
        attrs.extend(follow);
        let dn_attr = dn_attribute(s.kind);
        let mut seen: HashSet<String> = HashSet::new();
        let mut depth = 0;
        while !level.is_empty() && !self.truncated {
            level.retain(|dn| seen.insert(dn_key(dn)));
            let mut next = Vec::new();
            for chunk in level.chunks(BATCH) {
                let filter = or_filter(dn_attr, chunk);
                let entries = conn
                    .search_paged(&s.group_search_base, Scope::Subtree, &filter, &attrs)
                    .await?;
                for e in &entries {
                    if !self.add(e) {
                        break;
                    }
                    if let Some(a) = follow {
                        next.extend(attr(e, a).iter().cloned());
                    }
                }
            }
            depth += 1;
            if follow.is_none() || depth > s.nested_groups.max_depth {
                break;
            }
            level = next;
        }
        Ok(())
    }

    /// `member`: finds the groups whose `attribute` names a group of the
    /// previous level, until nothing new appears or a cap is hit.
    async fn walk_up_member(
        &mut self,
        conn: &mut Conn,
        attribute: &str,
        mut level: Vec<String>,
    ) -> Result<(), OpError> {
        let s = self.settings;
        let class = filter_value(&s.group_object_class);
        let attrs = self.attrs();
        let mut depth = 0;
        while !level.is_empty() && depth < s.nested_groups.max_depth && !self.truncated {
            let mut next = Vec::new();
            for chunk in level.chunks(BATCH) {
                let filter = format!("(&(objectClass={class}){})", or_filter(attribute, chunk));
                let entries = conn
                    .search_paged(&s.group_search_base, Scope::Subtree, &filter, &attrs)
                    .await?;
                for e in &entries {
                    // Already known: a cycle or a diamond; do not walk it again.
                    if self.found.contains_key(&dn_key(&e.dn)) {
                        continue;
                    }
                    if !self.add(e) {
                        break;
                    }
                    next.push(e.dn.clone());
                }
            }
            depth += 1;
            level = next;
        }
        Ok(())
    }
}

/// `(|(attr=v1)(attr=v2)…)` with every value escaped.
fn or_filter(attribute: &str, values: &[String]) -> String {
    let mut filter = String::from("(|");
    for v in values {
        filter.push('(');
        filter.push_str(attribute);
        filter.push('=');
        filter.push_str(&filter_value(v));
        filter.push(')');
    }
    filter.push(')');
    filter
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn or_filters_escape_every_value() {
        assert_eq!(
            or_filter("member", &[r"cn=Doe\, J (QA),dc=x".into(), "cn=*".into()]),
            r"(|(member=cn=Doe\5c, J \28QA\29,dc=x)(member=cn=\2a))"
        );
    }

    #[test]
    fn binary_ids_from_either_map() {
        let guid = vec![
            0xd4, 0x00, 0x9a, 0x49, 0x03, 0x9b, 0x26, 0x42, 0x80, 0x4e, 0x24, 0x67, 0xdc, 0x76,
            0x10, 0xaf,
        ];
        let mut e = SearchEntry {
            dn: "CN=g,DC=x".into(),
            attrs: Default::default(),
            bin_attrs: Default::default(),
        };
        e.bin_attrs.insert("objectGUID".into(), vec![guid]);
        assert_eq!(
            principal_id(DirectoryKind::ActiveDirectory, "activedirectory_group", &e),
            "activedirectory_group://499a00d4-9b03-4226-804e-2467dc7610af"
        );
        // A GUID whose bytes happen to be valid UTF-8 lands in `attrs`.
        let ascii: Vec<u8> = (0x30..0x40).collect();
        let mut e2 = SearchEntry {
            dn: "CN=g,DC=x".into(),
            attrs: Default::default(),
            bin_attrs: Default::default(),
        };
        e2.attrs.insert(
            "objectguid".into(),
            vec![String::from_utf8(ascii.clone()).unwrap()],
        );
        assert_eq!(
            principal_id(DirectoryKind::ActiveDirectory, "activedirectory_group", &e2),
            format!(
                "activedirectory_group://{}",
                guid_to_string(&ascii).unwrap()
            )
        );
        // No id attribute: the DN.
        e2.attrs.clear();
        assert_eq!(
            principal_id(DirectoryKind::OpenLdap, "openldap_group", &e2),
            "openldap_group://CN=g,DC=x"
        );
    }
}
