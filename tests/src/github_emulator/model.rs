//! The emulator's data: users, organisations, teams and their JSON shapes,
//! following GitHub's REST API documentation (`GET /user`, `/user/emails`,
//! `/user/orgs`, `/user/teams`).

use serde_json::{json, Value};

/// A GitHub user, their e-mail addresses and memberships.
#[derive(Debug, Clone)]
pub struct User {
    /// Numeric id (stable across renames).
    pub id: u64,
    /// Login name.
    pub login: String,
    /// Profile name.
    pub name: Option<String>,
    /// The public e-mail of the profile (`null` when private).
    pub email: Option<String>,
    /// Every address, as `/user/emails` lists them.
    pub emails: Vec<Email>,
    /// Ids of the organisations the user is a member of.
    pub orgs: Vec<u64>,
    /// Ids of the teams the user is a member of.
    pub teams: Vec<u64>,
}

impl User {
    /// A user with a verified primary address `<login>@example.com`.
    pub fn new(id: u64, login: &str) -> Self {
        Self {
            id,
            login: login.to_owned(),
            name: Some(format!("{login} (test)")),
            email: None,
            emails: vec![Email {
                email: format!("{login}@example.com"),
                primary: true,
                verified: true,
            }],
            orgs: Vec::new(),
            teams: Vec::new(),
        }
    }

    pub(crate) fn json(&self, base: &str) -> Value {
        json!({
            "login": self.login,
            "id": self.id,
            "node_id": format!("U_{}", self.id),
            "avatar_url": format!("{base}/avatars/{}", self.id),
            "url": format!("{base}/users/{}", self.login),
            "html_url": format!("{base}/{}", self.login),
            "type": "User",
            "site_admin": false,
            "name": self.name,
            "company": null,
            "email": self.email,
            "public_repos": 0,
            "followers": 0,
            "following": 0,
            "created_at": "2011-01-25T18:44:36Z",
            "updated_at": "2024-01-01T00:00:00Z",
        })
    }
}

/// One e-mail address of a user.
#[derive(Debug, Clone)]
pub struct Email {
    /// The address.
    pub email: String,
    /// Whether it is the primary one.
    pub primary: bool,
    /// Whether the user verified it.
    pub verified: bool,
}

impl Email {
    pub(crate) fn json(&self) -> Value {
        json!({
            "email": self.email,
            "primary": self.primary,
            "verified": self.verified,
            "visibility": if self.primary { Value::from("private") } else { Value::Null },
        })
    }
}

/// An organisation.
#[derive(Debug, Clone)]
pub struct Org {
    /// Numeric id.
    pub id: u64,
    /// Login (`acme`).
    pub login: String,
}

impl Org {
    pub(crate) fn json(&self, base: &str) -> Value {
        json!({
            "login": self.login,
            "id": self.id,
            "node_id": format!("O_{}", self.id),
            "url": format!("{base}/orgs/{}", self.login),
            "repos_url": format!("{base}/orgs/{}/repos", self.login),
            "members_url": format!("{base}/orgs/{}/members{{/member}}", self.login),
            "avatar_url": format!("{base}/avatars/o/{}", self.id),
            "description": format!("The {} organisation", self.login),
        })
    }
}

/// A team of an organisation.
#[derive(Debug, Clone)]
pub struct Team {
    /// Numeric id.
    pub id: u64,
    /// URL-safe name (`platform-team`).
    pub slug: String,
    /// Display name (`Platform Team`), may differ from the slug.
    pub name: String,
    /// The owning organisation's id.
    pub org: u64,
}

impl Team {
    pub(crate) fn json(&self, base: &str, org: &Org) -> Value {
        json!({
            "id": self.id,
            "node_id": format!("T_{}", self.id),
            "url": format!("{base}/teams/{}", self.id),
            "html_url": format!("https://github.example/orgs/{}/teams/{}", org.login, self.slug),
            "name": self.name,
            "slug": self.slug,
            "description": "",
            "privacy": "closed",
            "notification_setting": "notifications_enabled",
            "permission": "pull",
            "members_url": format!("{base}/teams/{}/members{{/member}}", self.id),
            "repositories_url": format!("{base}/teams/{}/repos", self.id),
            "parent": null,
            "members_count": 3,
            "repos_count": 0,
            "created_at": "2017-07-14T16:53:42Z",
            "updated_at": "2017-08-17T12:37:15Z",
            "organization": org.json(base),
        })
    }
}

/// Everything the emulator knows.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    /// Users.
    pub users: Vec<User>,
    /// Organisations.
    pub orgs: Vec<Org>,
    /// Teams.
    pub teams: Vec<Team>,
}

impl Directory {
    /// The standard fixture:
    ///
    /// - `octocat` (id 583231), member of `acme` (id 1001) and 39 more orgs
    ///   (`org-02` … `org-40`), of 150 `acme` teams (`team-001` … `team-150`,
    ///   ids 5001…; names "Team 1" … differ from their slugs), with 35
    ///   addresses of which the primary is verified, and a private profile
    ///   e-mail;
    /// - `outsider` (id 4242), in org `elsewhere` (id 2002) and its team
    ///   `nobody-cares` (id 9001);
    /// - `lonely` (id 77), in no organisation at all.
    pub fn fixture() -> Self {
        let mut orgs = vec![
            Org {
                id: 1001,
                login: "acme".into(),
            },
            Org {
                id: 2002,
                login: "elsewhere".into(),
            },
        ];
        for n in 2..=40u64 {
            orgs.push(Org {
                id: 1000 + n * 10,
                login: format!("org-{n:02}"),
            });
        }
        let mut teams: Vec<Team> = (1..=150u64)
            .map(|n| Team {
                id: 5000 + n,
                slug: format!("team-{n:03}"),
                name: format!("Team {n}"),
                org: 1001,
            })
            .collect();
        teams.push(Team {
            id: 9001,
            slug: "nobody-cares".into(),
            name: "Nobody Cares".into(),
            org: 2002,
        });
        let mut octocat = User::new(583231, "octocat");
        octocat.name = Some("The Octocat".into());
        octocat.orgs = std::iter::once(1001)
            .chain((2..=40u64).map(|n| 1000 + n * 10))
            .collect();
        octocat.teams = (1..=150u64).map(|n| 5000 + n).collect();
        for n in 1..35 {
            octocat.emails.push(Email {
                email: format!("octocat+{n}@example.com"),
                primary: false,
                verified: n % 2 == 0,
            });
        }
        let mut outsider = User::new(4242, "outsider");
        outsider.orgs = vec![2002];
        outsider.teams = vec![9001];
        let lonely = User::new(77, "lonely");
        Self {
            users: vec![octocat, outsider, lonely],
            orgs,
            teams,
        }
    }

    pub(crate) fn user(&self, login: &str) -> Option<&User> {
        self.users
            .iter()
            .find(|u| u.login.eq_ignore_ascii_case(login))
    }

    pub(crate) fn org(&self, id: u64) -> Option<&Org> {
        self.orgs.iter().find(|o| o.id == id)
    }

    pub(crate) fn team(&self, id: u64) -> Option<&Team> {
        self.teams.iter().find(|t| t.id == id)
    }
}
