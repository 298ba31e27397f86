use std::sync::Arc;

use ::policy::{RequestAttributes, Subject};

use super::*;
use crate::store::{EmbeddedOptions, EmbeddedStore, User, UserAttributes};

const GROUP: &str = "openldap_group://5b1c7e7a-1f4e-4d6e-9a57-2c1f0a9d3e11";

struct Fixture {
    _dir: tempfile::TempDir,
    view: Arc<StoreView>,
    policy: PolicySource,
    clusters: BTreeSet<String>,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open_in_dir(dir.path(), EmbeddedOptions::default()).unwrap();
        let view = StoreView::new(Arc::new(store)).unwrap();
        let policy = PolicySource {
            store: Some(view.clone()),
            ..PolicySource::default()
        };
        Self {
            _dir: dir,
            view,
            policy,
            clusters: ["prod".to_owned(), "dev".to_owned()].into(),
        }
    }

    fn checks(&self) -> Checks<'_> {
        Checks {
            policy: &self.policy,
            clusters: Some(&self.clusters),
        }
    }

    fn bind(
        &self,
        subject: NewSubject,
        role: &str,
        scope: NewScope,
    ) -> Result<RoleBinding, BindingError> {
        create_binding(
            &self.view,
            self.checks(),
            NewBinding {
                subject,
                role: role.to_owned(),
                scope,
            },
        )
    }

    /// A directory user `jdoe` of provider `corp`, as a login stores it.
    fn directory_user(&self) -> User {
        let user = User {
            id: "u-jdoe".into(),
            username: "jdoe".into(),
            display_name: "J. Doe".into(),
            enabled: true,
            must_change_password: false,
            principal_ids: vec!["openldap_user://jdoe-uuid".into()],
            created_at: Timestamp(0),
        };
        let attributes = UserAttributes {
            user_id: user.id.clone(),
            groups: [("corp".to_owned(), vec![GROUP.to_owned()])].into(),
            group_names: [(
                "corp".to_owned(),
                [(GROUP.to_owned(), "developers".to_owned())].into(),
            )]
            .into(),
            extra: [(
                "corp".to_owned(),
                [("username".to_owned(), vec!["jdoe".to_owned()])].into(),
            )]
            .into(),
            ..UserAttributes::default()
        };
        self.view
            .commit(vec![
                Op::put(Object::User(user.clone()), Expect::Absent),
                Op::put(Object::UserAttributes(attributes), Expect::Absent),
            ])
            .unwrap();
        user
    }

    fn allowed(&self, subject: &Subject, cluster: &str, namespace: &str) -> bool {
        let set = self.policy.load().unwrap();
        let attributes = RequestAttributes::from_request(
            "GET",
            &format!("/api/v1/namespaces/{namespace}/pods"),
            None,
        )
        .unwrap();
        set.decide(subject, cluster, &attributes).allowed
    }
}

fn member() -> Subject {
    Subject {
        user: "u-someone".into(),
        groups: vec![GROUP.into()],
    }
}

#[test]
fn a_group_bound_to_a_cluster_grants_its_members_that_cluster_only() {
    let f = Fixture::new();
    let binding = f
        .bind(
            NewSubject::Group(GROUP.into()),
            "cluster-member",
            NewScope::Cluster("prod".into()),
        )
        .unwrap();
    assert_eq!(binding.subject_kind, SubjectKind::Group);
    assert!(binding.id.starts_with("crtb-"), "{}", binding.id);
    // cluster-member reads nothing in namespaces; cluster-owner does.
    f.bind(
        NewSubject::Group(GROUP.into()),
        "cluster-owner",
        NewScope::Cluster("prod".into()),
    )
    .unwrap();
    assert!(f.allowed(&member(), "prod", "default"));
    assert!(!f.allowed(&member(), "dev", "default"));
    let outsider = Subject {
        user: "u-other".into(),
        groups: vec!["openldap_group://other".into()],
    };
    assert!(!f.allowed(&outsider, "prod", "default"));
}

#[test]
fn github_teams_are_groups_too() {
    let f = Fixture::new();
    let team = "github_team://4242";
    let binding = f
        .bind(
            NewSubject::Group(team.into()),
            "cluster-owner",
            NewScope::Cluster("prod".into()),
        )
        .unwrap();
    assert!(binding.subject_is_group());
    let subject = Subject {
        user: "u-x".into(),
        groups: vec![team.into()],
    };
    assert!(f.allowed(&subject, "prod", "default"));
}

#[test]
fn bindings_written_before_the_subject_kind_read_as_before() {
    let old = r#"{"id":"b","subject":"openldap_group://x","role":"r","scope":{"type":"global"},"created_at":0}"#;
    let binding: RoleBinding = serde_json::from_str(old).unwrap();
    assert_eq!(binding.subject_kind, SubjectKind::User);
    assert!(binding.subject_is_group());
    let old_user = old.replace("openldap_group://x", "u-abc");
    let binding: RoleBinding = serde_json::from_str(&old_user).unwrap();
    assert!(!binding.subject_is_group());
}

#[test]
fn unknown_roles_and_roles_of_the_wrong_scope_are_refused_by_name() {
    let f = Fixture::new();
    let group = || NewSubject::Group(GROUP.into());
    let cases = [
        ("no-such-role", NewScope::Cluster("prod".into())),
        ("no-such-role", NewScope::Global),
        // A project template where a cluster one is needed, and a role
        // template where a global role is needed.
        ("project-member", NewScope::Cluster("prod".into())),
        ("cluster-owner", NewScope::Global),
    ];
    for (role, scope) in cases {
        let error = f.bind(group(), role, scope.clone()).unwrap_err();
        assert!(
            matches!(&error, BindingError::InvalidRole { role: r, .. } if r == role),
            "{role} at {scope:?}: {error}"
        );
        assert!(error.to_string().contains(role), "{error}");
    }
    assert!(f.view.with_snapshot(|s| s.role_bindings().count()) == 0);
}

#[test]
fn duplicates_unknown_clusters_and_non_groups_are_refused() {
    let f = Fixture::new();
    let scope = || NewScope::Cluster("prod".into());
    f.bind(NewSubject::Group(GROUP.into()), "cluster-owner", scope())
        .unwrap();
    let error = f
        .bind(NewSubject::Group(GROUP.into()), "cluster-owner", scope())
        .unwrap_err();
    assert!(matches!(error, BindingError::Duplicate(_)), "{error}");
    let error = f
        .bind(
            NewSubject::Group(GROUP.into()),
            "cluster-owner",
            NewScope::Cluster("nope".into()),
        )
        .unwrap_err();
    assert!(matches!(error, BindingError::UnknownCluster(_)), "{error}");
    for not_a_group in ["developers", "openldap_user://x", "openldap_group://"] {
        let error = f
            .bind(
                NewSubject::Group(not_a_group.into()),
                "cluster-owner",
                scope(),
            )
            .unwrap_err();
        assert!(matches!(error, BindingError::NotAGroup(_)), "{error}");
    }
}

#[test]
fn directory_users_are_named_by_provider_and_login() {
    let f = Fixture::new();
    let user = f.directory_user();
    f.view.with_snapshot(|s| {
        for who in [
            "corp/jdoe",
            "corp/JDOE",
            "u-jdoe",
            "openldap_user://jdoe-uuid",
        ] {
            assert_eq!(resolve_user(s, who).unwrap().id, user.id, "{who}");
        }
        for who in ["jdoe", "other/jdoe", "local/jdoe", "corp/nobody"] {
            assert!(
                matches!(resolve_user(s, who), Err(LookupError::NotFound { .. })),
                "{who}"
            );
        }
    });
    let binding = f
        .bind(
            NewSubject::User("corp/jdoe".into()),
            "user",
            NewScope::Global,
        )
        .unwrap();
    assert_eq!(binding.subject, user.id);
    // A principal id binds before the first login, to the id it will create.
    let binding = f
        .bind(
            NewSubject::User("openldap_user://not-yet".into()),
            "user",
            NewScope::Global,
        )
        .unwrap();
    assert_eq!(
        binding.subject,
        crate::authn::external::user_id_for("openldap_user://not-yet")
    );
}

#[test]
fn projects_scope_project_roles_to_their_namespaces() {
    let f = Fixture::new();
    let project = create_project(&f.view, f.checks(), "prod", "team-a", &["apps".into()]).unwrap();
    let user = f.directory_user();
    let binding = f
        .bind(
            NewSubject::User("corp/jdoe".into()),
            "project-member",
            NewScope::Project {
                cluster: "prod".into(),
                project: "team-a".into(),
            },
        )
        .unwrap();
    assert_eq!(binding.scope, BindingScope::Project(project.id.clone()));
    let subject = Subject {
        user: user.id.clone(),
        groups: Vec::new(),
    };
    assert!(f.allowed(&subject, "prod", "apps"));
    assert!(!f.allowed(&subject, "prod", "other"));

    add_namespace(&f.view, &project.id, "other").unwrap();
    assert!(f.allowed(&subject, "prod", "other"));
    remove_namespace(&f.view, &project.id, "other").unwrap();
    assert!(!f.allowed(&subject, "prod", "other"));

    // A namespace belongs to one project per cluster; names are labels.
    let second = create_project(&f.view, f.checks(), "prod", "team-b", &[]).unwrap();
    let error = add_namespace(&f.view, &second.id, "apps").unwrap_err();
    assert!(matches!(error, BindingError::Duplicate(_)), "{error}");
    let error = add_namespace(&f.view, &second.id, "Not_A_Name").unwrap_err();
    assert!(matches!(error, BindingError::Invalid(_)), "{error}");
    let error = create_project(&f.view, f.checks(), "prod", "team-a", &[]).unwrap_err();
    assert!(matches!(error, BindingError::Duplicate(_)), "{error}");

    // A project with bindings stays until they are gone.
    let error = delete_project(&f.view, &project.id).unwrap_err();
    assert!(error.to_string().contains(&binding.id), "{error}");
    delete_binding(&f.view, &binding.id).unwrap();
    assert!(!f.allowed(&subject, "prod", "apps"));
    delete_project(&f.view, &project.id).unwrap();
    assert!(matches!(
        delete_project(&f.view, &project.id),
        Err(BindingError::UnknownProject(_))
    ));
}
