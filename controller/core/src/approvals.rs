//! Approval quorums: which requirements a list of approvals meets.
//!
//! Rules (from the release-management policy):
//! - each requirement needs `count` *distinct* people approving in its role;
//! - a person counts toward one requirement only (two-person rule: a security lead who is also
//!   the product owner cannot satisfy both), found by a maximum bipartite matching so the order
//!   of approvals never matters;
//! - duplicate approvals by one person count once (usernames are compared ignoring ASCII case);
//! - approvals by the promotion's requester are ignored and reported, always; with
//!   `forbid_self_approval`, those by the release author too;
//! - an approval counts from when kiln first saw it ([`record_seen`], `status.approvalsSeen`), not
//!   from its own `at` (a client can write any time there): it expires that long after, and a
//!   retry that asks for fresh approvals discounts those seen before it ([`standing`]).

use jiff::{SignedDuration, Timestamp};
use kiln_api::promotion::SeenApproval;
use kiln_api::{Approval, ApprovalRequirement};

use crate::time::to_time;

/// Who may not approve a change of their own: the Promotion's requester never (an approval by
/// the person who asked is no second pair of eyes); the Release's author when `forbid` is set
/// (`author` is what the Release says, not verified: the Environment decides whether to rely on
/// it).
#[derive(Debug, Clone, Default)]
pub struct SelfApprovalRule<'a> {
    /// Whether approvals by the Release's author are refused too.
    pub forbid: bool,
    /// The Release's author.
    pub author: Option<&'a str>,
    /// The person who requested the Promotion.
    pub requester: Option<&'a str>,
}

impl SelfApprovalRule<'_> {
    /// Why `user` may not approve, if so. Usernames are compared ignoring ASCII case so
    /// `Alice@Example.com` cannot approve `alice@example.com`'s change.
    fn refusal(&self, user: &str) -> Option<&'static str> {
        let same = |other: Option<&str>| other.is_some_and(|o| o.eq_ignore_ascii_case(user));
        if self.forbid && same(self.author) {
            Some("is the release author")
        } else if same(self.requester) {
            Some("requested this promotion")
        } else {
            None
        }
    }
}

/// One requirement and who was counted toward it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequirementResult {
    /// The role.
    pub role: String,
    /// How many people it needs.
    pub needed: u32,
    /// The people counted toward it (at most `needed`).
    pub approvers: Vec<String>,
}

impl RequirementResult {
    /// Whether the requirement is met.
    pub fn met(&self) -> bool {
        self.approvers.len() >= self.needed as usize
    }
}

/// An approval that was not counted, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The approver.
    pub user: String,
    /// The role they approved in.
    pub role: String,
    /// Why it did not count.
    pub reason: String,
}

/// The outcome of checking approvals against requirements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumReport {
    /// Each requirement with the people counted toward it.
    pub requirements: Vec<RequirementResult>,
    /// Approvals that were not counted because of the self-approval rule.
    pub refused: Vec<Refused>,
}

impl QuorumReport {
    /// True when every requirement is met.
    pub fn met(&self) -> bool {
        self.requirements.iter().all(RequirementResult::met)
    }

    /// A one-line summary for a gate message, e.g.
    /// `needs 1 product approval (have security: seclead)` or
    /// `approved (security: seclead; product: pm)`.
    pub fn message(&self) -> String {
        let have: Vec<String> = self
            .requirements
            .iter()
            .filter(|r| !r.approvers.is_empty())
            .map(|r| format!("{}: {}", r.role, r.approvers.join(", ")))
            .collect();
        let mut msg = if self.requirements.is_empty() {
            "no approvals required".to_string()
        } else if self.met() {
            format!("approved ({})", have.join("; "))
        } else {
            let missing: Vec<String> = self
                .requirements
                .iter()
                .filter(|r| !r.met())
                .map(|r| {
                    let n = r.needed as usize - r.approvers.len();
                    let noun = if n == 1 { "approval" } else { "approvals" };
                    format!("{n} {} {noun}", r.role)
                })
                .collect();
            let have = if have.is_empty() { "none".to_string() } else { have.join("; ") };
            format!("needs {} (have {have})", missing.join(" and "))
        };
        for r in &self.refused {
            msg.push_str(&format!("; {} ({}) not counted: {}", r.user, r.role, r.reason));
        }
        msg
    }
}

/// Records in `seen` every approval of `approvals` not seen before, as seen at `now`. An
/// approval is one (user, role, at): the same person approving again later is another approval.
pub fn record_seen(seen: &mut Vec<SeenApproval>, approvals: &[Approval], now: Timestamp) {
    for a in approvals {
        if !seen.iter().any(|s| s.user == a.user && s.role == a.role && s.at == a.at) {
            seen.push(SeenApproval {
                user: a.user.clone(),
                role: a.role.clone(),
                at: a.at.clone(),
                seen_at: to_time(now),
            });
        }
    }
}

/// The approvals that count at an instant, and those that no longer do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Standing {
    /// The approvals that count.
    pub counted: Vec<Approval>,
    /// The approvals that do not, and why (expired, or seen before a retry that asked for fresh
    /// ones).
    pub stale: Vec<Refused>,
}

/// Which of `approvals` count at `now`: each from when kiln first saw it (`seen`; one not
/// recorded yet, from `now`), not those seen before `valid_from`, not those seen longer than
/// `expire_after` ago.
pub fn standing(
    approvals: &[Approval],
    seen: &[SeenApproval],
    now: Timestamp,
    expire_after: Option<(SignedDuration, &str)>,
    valid_from: Option<Timestamp>,
) -> Standing {
    let mut out = Standing::default();
    for a in approvals {
        let seen_at = seen
            .iter()
            .find(|s| s.user == a.user && s.role == a.role && s.at == a.at)
            .map(|s| s.seen_at.0)
            .unwrap_or(now);
        let stale = |reason: String| Refused { user: a.user.clone(), role: a.role.clone(), reason };
        if let Some(from) = valid_from
            && seen_at < from
        {
            out.stale.push(stale("approved before the retry, which asks for fresh approvals".to_string()));
            continue;
        }
        if let Some((ttl, written)) = expire_after
            && seen_at.checked_add(ttl).is_ok_and(|until| until <= now)
        {
            out.stale.push(stale(format!(
                "approved at {} and approvals expire after {written} here",
                seen_at.strftime("%Y-%m-%dT%H:%M:%SZ")
            )));
            continue;
        }
        out.counted.push(a.clone());
    }
    out
}

/// Checks `approvals` against `requirements`.
pub fn evaluate(
    requirements: &[ApprovalRequirement],
    approvals: &[Approval],
    rule: &SelfApprovalRule<'_>,
) -> QuorumReport {
    // Distinct (user, role) pairs that count, in first-seen order.
    let mut users: Vec<(String, Vec<String>)> = Vec::new();
    let mut refused: Vec<Refused> = Vec::new();
    for a in approvals {
        if let Some(reason) = rule.refusal(&a.user) {
            if !refused.iter().any(|r| r.user == a.user && r.role == a.role) {
                refused.push(Refused {
                    user: a.user.clone(),
                    role: a.role.clone(),
                    reason: format!("{} {reason}", a.user),
                });
            }
            continue;
        }
        // Usernames differing only in ASCII case are one person (as for self-approval).
        match users.iter_mut().find(|(u, _)| u.eq_ignore_ascii_case(&a.user)) {
            Some((_, roles)) if !roles.contains(&a.role) => roles.push(a.role.clone()),
            Some(_) => {}
            None => users.push((a.user.clone(), vec![a.role.clone()])),
        }
    }

    // One slot per required approver; match people to slots (Kuhn's augmenting paths).
    let slots: Vec<usize> =
        requirements.iter().enumerate().flat_map(|(i, r)| std::iter::repeat_n(i, r.count as usize)).collect();
    let mut slot_owner: Vec<Option<usize>> = vec![None; slots.len()];
    for u in 0..users.len() {
        let mut seen = vec![false; slots.len()];
        augment(u, &users, requirements, &slots, &mut slot_owner, &mut seen);
    }

    let mut results: Vec<RequirementResult> = requirements
        .iter()
        .map(|r| RequirementResult { role: r.role.clone(), needed: r.count, approvers: Vec::new() })
        .collect();
    for (slot, owner) in slot_owner.iter().enumerate() {
        if let (Some(u), Some(req)) = (owner, slots.get(slot))
            && let (Some(res), Some((name, _))) = (results.get_mut(*req), users.get(*u))
        {
            res.approvers.push(name.clone());
        }
    }
    QuorumReport { requirements: results, refused }
}

fn augment(
    user: usize,
    users: &[(String, Vec<String>)],
    requirements: &[ApprovalRequirement],
    slots: &[usize],
    slot_owner: &mut [Option<usize>],
    seen: &mut [bool],
) -> bool {
    let Some((_, roles)) = users.get(user) else { return false };
    for (slot, req) in slots.iter().enumerate() {
        let Some(requirement) = requirements.get(*req) else { continue };
        if seen[slot] || !roles.contains(&requirement.role) {
            continue;
        }
        seen[slot] = true;
        let free = match slot_owner[slot] {
            None => true,
            Some(other) => augment(other, users, requirements, slots, slot_owner, seen),
        };
        if free {
            slot_owner[slot] = Some(user);
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::Timestamp;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use proptest::prelude::*;

    fn req(role: &str, count: u32) -> ApprovalRequirement {
        ApprovalRequirement { role: role.into(), count }
    }

    fn ap(user: &str, role: &str) -> Approval {
        Approval { user: user.into(), role: role.into(), at: Time(Timestamp::UNIX_EPOCH), comment: None }
    }

    const NOBODY: SelfApprovalRule<'static> = SelfApprovalRule { forbid: true, author: None, requester: None };

    #[test]
    fn prod_needs_security_and_product() {
        let reqs = [req("security", 1), req("product", 1)];
        let r = evaluate(&reqs, &[ap("seclead", "security")], &NOBODY);
        assert!(!r.met());
        assert_eq!(r.message(), "needs 1 product approval (have security: seclead)");
        let r = evaluate(&reqs, &[ap("seclead", "security"), ap("pm", "product")], &NOBODY);
        assert!(r.met());
        assert_eq!(r.message(), "approved (security: seclead; product: pm)");
    }

    #[test]
    fn one_person_counts_toward_one_requirement_only() {
        let reqs = [req("security", 1), req("product", 1)];
        let r = evaluate(&reqs, &[ap("alice", "security"), ap("alice", "product")], &NOBODY);
        assert!(!r.met(), "{}", r.message());
    }

    #[test]
    fn matching_finds_the_assignment_whatever_the_order() {
        // alice can do either role, bob only security: alice must take product.
        let reqs = [req("security", 1), req("product", 1)];
        let approvals = [ap("alice", "security"), ap("alice", "product"), ap("bob", "security")];
        let r = evaluate(&reqs, &approvals, &NOBODY);
        assert!(r.met(), "{}", r.message());
        assert_eq!(r.requirements[0].approvers, vec!["bob"]);
        assert_eq!(r.requirements[1].approvers, vec!["alice"]);
    }

    #[test]
    fn duplicates_count_once_and_counts_need_distinct_people() {
        let reqs = [req("security", 2)];
        let r = evaluate(&reqs, &[ap("a", "security"), ap("a", "security")], &NOBODY);
        assert!(!r.met());
        assert_eq!(r.message(), "needs 1 security approval (have security: a)");
        let r = evaluate(&reqs, &[ap("a", "security"), ap("b", "security")], &NOBODY);
        assert!(r.met());
        let r = evaluate(&reqs, &[ap("Alice", "security"), ap("alice", "security")], &NOBODY);
        assert!(!r.met(), "case variants of one username are one person");
    }

    #[test]
    fn self_approval_is_refused_when_forbidden() {
        let reqs = [req("release-engineering", 1)];
        let rule = SelfApprovalRule { forbid: true, author: Some("dev@example.com"), requester: Some("ci-bot") };
        let r = evaluate(&reqs, &[ap("Dev@Example.com", "release-engineering")], &rule);
        assert!(!r.met());
        assert!(r.message().contains("Dev@Example.com is the release author"), "{}", r.message());
        let r = evaluate(&reqs, &[ap("ci-bot", "release-engineering")], &rule);
        assert!(r.message().contains("requested this promotion"), "{}", r.message());
        // Without forbidSelfApproval the author may approve; the requester never can.
        let allowed = SelfApprovalRule { forbid: false, ..rule };
        assert!(evaluate(&reqs, &[ap("dev@example.com", "release-engineering")], &allowed).met());
        let r = evaluate(&reqs, &[ap("ci-bot", "release-engineering")], &allowed);
        assert!(!r.met() && r.message().contains("requested this promotion"), "{}", r.message());
    }

    #[test]
    fn wrong_role_does_not_count_and_no_requirements_is_met() {
        let r = evaluate(&[req("security", 1)], &[ap("a", "product")], &NOBODY);
        assert_eq!(r.message(), "needs 1 security approval (have none)");
        let r = evaluate(&[], &[], &NOBODY);
        assert!(r.met());
        assert_eq!(r.message(), "no approvals required");
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    /// Issue "Tenancy and release integrity" §3: an approval counts from when kiln first saw it,
    /// whatever its own `at` says; it expires that long after; a retry asking for fresh approvals
    /// discounts those seen before it.
    #[test]
    fn approvals_count_from_when_kiln_saw_them() {
        let mut backdated = ap("sec", "security");
        backdated.at = Time(at("2020-01-01T00:00:00Z"));
        let approvals = vec![backdated, ap("pm", "product")];
        let mut seen = Vec::new();
        record_seen(&mut seen, &approvals, at("2026-12-07T10:00:00Z"));
        record_seen(&mut seen, &approvals, at("2026-12-07T11:00:00Z"));
        assert_eq!(seen.len(), 2, "recorded once each");
        assert!(seen.iter().all(|s| s.seen_at.0 == at("2026-12-07T10:00:00Z")), "{seen:?}");

        let ttl = Some((SignedDuration::from_hours(24), "24h"));
        // A backdated `at` does not make it expire: kiln's time does.
        let s = standing(&approvals, &seen, at("2026-12-08T09:59:00Z"), ttl, None);
        assert_eq!((s.counted.len(), s.stale.len()), (2, 0));
        let s = standing(&approvals, &seen, at("2026-12-08T10:00:00Z"), ttl, None);
        assert_eq!(s.counted.len(), 0);
        assert!(s.stale[0].reason.contains("approved at 2026-12-07T10:00:00Z and approvals expire after 24h"), "{s:?}");
        let mut report = evaluate(&[req("security", 1)], &s.counted, &NOBODY);
        report.refused.extend(s.stale);
        assert!(
            report.message().starts_with("needs 1 security approval (have none); sec (security) not counted"),
            "{}",
            report.message()
        );

        // A retry asking for fresh approvals: those seen before it do not count; a new one does.
        let retry = at("2026-12-07T12:00:00Z");
        let mut again = ap("sec", "security");
        again.at = Time(at("2026-12-07T12:30:00Z"));
        let mut all = approvals.clone();
        all.push(again);
        record_seen(&mut seen, &all, at("2026-12-07T12:30:05Z"));
        let s = standing(&all, &seen, at("2026-12-07T13:00:00Z"), None, Some(retry));
        assert_eq!(s.counted.iter().map(|a| a.user.as_str()).collect::<Vec<_>>(), ["sec"]);
        assert_eq!(s.stale.len(), 2);
        assert!(s.stale.iter().all(|r| r.reason.contains("before the retry")), "{s:?}");
    }

    /// A brute-force reference: try every assignment of users to slots.
    fn brute_force(reqs: &[ApprovalRequirement], approvals: &[Approval]) -> bool {
        let slots: Vec<&str> =
            reqs.iter().flat_map(|r| std::iter::repeat_n(r.role.as_str(), r.count as usize)).collect();
        let mut users: Vec<&str> = approvals.iter().map(|a| a.user.as_str()).collect();
        users.sort();
        users.dedup();
        fn fill(i: usize, slots: &[&str], users: &[&str], used: &mut Vec<bool>, approvals: &[Approval]) -> bool {
            if i == slots.len() {
                return true;
            }
            for (u, name) in users.iter().enumerate() {
                if !used[u] && approvals.iter().any(|a| a.user == *name && a.role == slots[i]) {
                    used[u] = true;
                    if fill(i + 1, slots, users, used, approvals) {
                        return true;
                    }
                    used[u] = false;
                }
            }
            false
        }
        let mut used = vec![false; users.len()];
        fill(0, &slots, &users, &mut used, approvals)
    }

    proptest! {
        #[test]
        fn quorum_matches_brute_force(
            counts in proptest::collection::vec(0u32..3, 1..4),
            approvals in proptest::collection::vec((0usize..5, 0usize..4), 0..10),
        ) {
            let roles = ["security", "product", "sre", "other"];
            let reqs: Vec<_> = counts.iter().enumerate().filter(|(_, c)| **c > 0).map(|(i, c)| req(roles[i], *c)).collect();
            let approvals: Vec<_> = approvals.iter().map(|(u, r)| ap(&format!("user{u}"), roles[*r])).collect();
            let report = evaluate(&reqs, &approvals, &NOBODY);
            prop_assert_eq!(report.met(), brute_force(&reqs, &approvals));
            // Nobody is counted twice.
            let mut counted: Vec<&String> = report.requirements.iter().flat_map(|r| &r.approvers).collect();
            let n = counted.len();
            counted.sort();
            counted.dedup();
            prop_assert_eq!(counted.len(), n);
        }

        #[test]
        fn order_of_approvals_does_not_matter(
            approvals in proptest::collection::vec((0usize..4, 0usize..3), 0..8),
        ) {
            let roles = ["security", "product", "sre"];
            let reqs = [req("security", 1), req("product", 1), req("sre", 1)];
            let mut list: Vec<_> = approvals.iter().map(|(u, r)| ap(&format!("u{u}"), roles[*r])).collect();
            let forward = evaluate(&reqs, &list, &NOBODY).met();
            list.reverse();
            prop_assert_eq!(forward, evaluate(&reqs, &list, &NOBODY).met());
        }
    }
}
