//! Bearer-token authentication: tokens map to users and groups, as kube-apiserver's static token
//! file (`--token-auth-file`) does. Every authenticated user gets `system:authenticated`.

/// An authenticated identity (`request.userInfo`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserInfo {
    /// User name.
    pub username: String,
    /// User uid.
    pub uid: String,
    /// Groups (including `system:authenticated`).
    pub groups: Vec<String>,
}

impl UserInfo {
    /// A user in some groups.
    pub fn new(username: &str, groups: &[&str]) -> Self {
        let mut groups: Vec<String> = groups.iter().map(|g| (*g).to_string()).collect();
        if !groups.iter().any(|g| g == "system:authenticated") {
            groups.push("system:authenticated".into());
        }
        UserInfo { username: username.into(), uid: username.into(), groups }
    }

    /// A ServiceAccount (`system:serviceaccount:<namespace>:<name>`, in `system:serviceaccounts`,
    /// `system:serviceaccounts:<namespace>` and `system:authenticated`).
    pub fn service_account(namespace: &str, name: &str) -> Self {
        let mut user = UserInfo::new(
            &format!("system:serviceaccount:{namespace}:{name}"),
            &["system:serviceaccounts", &format!("system:serviceaccounts:{namespace}")],
        );
        user.uid = uuid::Uuid::new_v4().to_string();
        user
    }
}

/// Parses a static token file: `token,user,uid[,"group1,group2"]` per line; blank lines and
/// `#` comments are skipped. Errors are `(line, message)`.
pub fn parse_token_file(text: &str) -> Result<Vec<(String, UserInfo)>, (usize, String)> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields = split_csv(line);
        if fields.len() < 3 {
            return Err((i + 1, "expected token,user,uid[,\"groups\"]".into()));
        }
        let groups: Vec<&str> =
            fields.get(3).map(|g| g.split(',').map(str::trim).filter(|g| !g.is_empty()).collect()).unwrap_or_default();
        let mut user = UserInfo::new(&fields[1], &groups);
        user.uid = fields[2].clone();
        out.push((fields[0].clone(), user));
    }
    Ok(out)
}

/// CSV with double-quoted fields.
fn split_csv(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (mut cur, mut quoted) = (String::new(), false);
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur).trim().to_string()),
            _ => cur.push(c),
        }
    }
    out.push(cur.trim().to_string());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_file() {
        let parsed = parse_token_file("# c\nt1,alice,u1,\"security,sre\"\nt2,bob,u2\n").unwrap();
        assert_eq!(parsed[0].0, "t1");
        assert_eq!(parsed[0].1.groups, ["security", "sre", "system:authenticated"]);
        assert_eq!(parsed[1].1.username, "bob");
        assert_eq!(parse_token_file("x,y").map_err(|e| e.0), Err(1));
    }
}
