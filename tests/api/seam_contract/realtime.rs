//! The bus's and presence's contract (the presence scripts and channels against the presence
//! actor): sessions are counted per user over every node, a user's frames reach each of their
//! sessions wherever it is, in order and once, revocations close what they cover on every node
//! (also sockets still opening), and admins see one order of joins and leaves.

use std::sync::Arc;
use std::time::{Duration, Instant};

use switchboard::seams::bus::{Frame, RevokeScope};
use switchboard::seams::presence::LeaveReason;

use super::{
    Cluster, TestInbox, eventually, on_every_engine, session, session_at, unique, wait_for_presence,
};

on_every_engine!(
    presence_counts_a_user_on_every_node_until_their_last_session_leaves,
    a_users_frames_reach_each_of_their_sessions_on_every_node_once_and_in_order,
    a_revocation_closes_exactly_the_sessions_it_covers_on_every_node,
    a_session_checked_before_a_revocation_is_refused_when_it_joins_after_it_on_another_node,
    an_admin_following_presence_sees_one_order_of_joins_and_leaves_over_every_node,
    closing_a_node_tells_each_of_its_sessions_and_counts_them,
    a_nodes_sockets_are_counted_per_login_session,
);

/// Waits until `inbox` holds `count` frames, and answers them.
async fn frames(inbox: &TestInbox, count: usize, what: &str) -> Vec<String> {
    eventually(what, || {
        let frames = inbox.frames();
        (frames.len() >= count).then_some(frames)
    })
    .await
}

/// Waits until `inbox` was told of a revocation, and answers its reason.
async fn revocation(inbox: &TestInbox, what: &str) -> &'static str {
    eventually(what, || inbox.revoked()).await
}

/// A user with a session on each node, then one of them leaving, then the other.
async fn presence_counts_a_user_on_every_node_until_their_last_session_leaves(cluster: &Cluster) {
    let nodes = cluster.realtime(10).await;
    let ada = unique("ada");
    let (first, join, _) = session(&ada, Some("login-1"));
    nodes[0].presence.join(join);
    let (second, join, _) = session(&ada, Some("login-2"));
    nodes[1].presence.join(join);
    wait_for_presence(&nodes, &[(&ada, 2)], "two sessions of ada, one per node").await;
    nodes[0].presence.leave(&first, LeaveReason::Closed);
    wait_for_presence(&nodes, &[(&ada, 1)], "ada's session on node 1 is left").await;
    nodes[1].presence.leave(&second, LeaveReason::Timeout);
    wait_for_presence(&nodes, &[], "nobody online").await;
}

/// Twenty frames sent on node 0 reach ada's sessions on both nodes in order; a frame sent on node
/// 1 follows them; neither arrives twice; bob, online too, gets only his own.
async fn a_users_frames_reach_each_of_their_sessions_on_every_node_once_and_in_order(cluster: &Cluster) {
    let nodes = cluster.realtime(10).await;
    let (ada, bob) = (unique("ada"), unique("bob"));
    let (_, join, here) = session(&ada, Some("login-1"));
    nodes[0].presence.join(join);
    let (_, join, there) = session(&ada, Some("login-2"));
    nodes[1].presence.join(join);
    let (_, join, bobs) = session(&bob, Some("login-3"));
    nodes[1].presence.join(join);
    let mut online = [(ada.as_str(), 2), (bob.as_str(), 1)];
    online.sort();
    wait_for_presence(&nodes, &online, "ada on both nodes and bob on node 1").await;

    let mut sent: Vec<String> = (0..20).map(|n| format!("{{\"n\":{n}}}")).collect();
    for frame in &sent {
        nodes[0].bus.to_user(&ada, Frame::from(frame.as_str()));
    }
    assert_eq!(frames(&there, 20, "the twenty frames on node 1").await, sent, "in order on node 1");
    // Sent after node 1 had the twenty, so anything of them still on its way arrives before it.
    nodes[1].bus.to_user(&ada, Frame::from("{\"n\":\"last\"}"));
    nodes[1].bus.to_user(&bob, Frame::from("{\"for\":\"bob\"}"));
    sent.push("{\"n\":\"last\"}".into());
    assert_eq!(frames(&here, 21, "the last frame on node 0").await, sent, "in order, once, on node 0");
    assert_eq!(frames(&there, 21, "the last frame on node 1").await, sent, "once on node 1");
    assert_eq!(frames(&bobs, 1, "bob's frame").await, ["{\"for\":\"bob\"}"], "bob gets only his own");
}

/// Ada's sessions of login 2 (one per node) close for a logout on node 0, her API-key session
/// for a key regenerated on node 1, with their reasons; her session of login 1 stays, which a
/// later revocation of bob's, published after both, shows.
async fn a_revocation_closes_exactly_the_sessions_it_covers_on_every_node(cluster: &Cluster) {
    let nodes = cluster.realtime(10).await;
    let (ada, bob) = (unique("ada"), unique("bob"));
    let (_, join, kept) = session(&ada, Some("login-1"));
    nodes[0].presence.join(join);
    let (_, join, logged_out_here) = session(&ada, Some("login-2"));
    nodes[0].presence.join(join);
    let (_, join, logged_out_there) = session(&ada, Some("login-2"));
    nodes[1].presence.join(join);
    let (_, join, api_key) = session(&ada, None);
    nodes[1].presence.join(join);
    let (_, join, bobs) = session(&bob, Some("login-3"));
    nodes[0].presence.join(join);
    let mut online = [(ada.as_str(), 4), (bob.as_str(), 1)];
    online.sort();
    wait_for_presence(&nodes, &online, "everyone joined").await;

    nodes[0].bus.revoke(&ada, RevokeScope::LoginSession("login-2".into()), "logout");
    assert_eq!(revocation(&logged_out_here, "login 2 on node 0").await, "logout");
    assert_eq!(revocation(&logged_out_there, "login 2 on node 1").await, "logout");
    nodes[1].bus.revoke(&ada, RevokeScope::ApiKeys, "api_key_regenerated");
    assert_eq!(revocation(&api_key, "the API-key session").await, "api_key_regenerated");
    nodes[1].bus.revoke(&bob, RevokeScope::All, "account_disabled");
    assert_eq!(revocation(&bobs, "bob's session on node 0").await, "account_disabled");
    assert_eq!(kept.revoked(), None, "login 1 is covered by none of them");
    assert_eq!(api_key.frames().len() + logged_out_there.frames().len(), 0, "no frames were sent");
}

/// A socket whose credential was checked before a logout, and which joins node 1 only after
/// node 1 handled that logout (published on node 0), is refused with its reason; one checked
/// after it, and one of another login, are let in; a check older than the revocation memory is
/// refused outright.
async fn a_session_checked_before_a_revocation_is_refused_when_it_joins_after_it_on_another_node(
    cluster: &Cluster,
) {
    let nodes = cluster.realtime(10).await;
    let ada = unique("ada");
    let checked_before = Instant::now();
    let (sentinel, join, sentinel_inbox) = session(&ada, Some("login-1"));
    nodes[1].presence.join(join);
    wait_for_presence(&nodes, &[(&ada, 1)], "the sentinel joined node 1").await;
    nodes[0].bus.revoke(&ada, RevokeScope::LoginSession("login-1".into()), "logout");
    revocation(&sentinel_inbox, "node 1 handled the logout").await;
    nodes[1].presence.leave(&sentinel, LeaveReason::Revoked);
    wait_for_presence(&nodes, &[], "the sentinel left").await;

    let (_, join, late) = session_at(&ada, Some("login-1"), checked_before);
    nodes[1].presence.join(join);
    assert_eq!(revocation(&late, "the late join is refused").await, "logout");
    let too_old = checked_before.checked_sub(Duration::from_secs(120)).expect("the machine is up 2 minutes");
    let (_, join, stale) = session_at(&ada, Some("login-2"), too_old);
    nodes[1].presence.join(join);
    assert_eq!(revocation(&stale, "the stale check is refused").await, "credential_check_expired");

    let (_, join, fresh) = session(&ada, Some("login-1"));
    nodes[1].presence.join(join);
    let (_, join, other_login) = session_at(&ada, Some("login-2"), checked_before);
    nodes[1].presence.join(join);
    wait_for_presence(&nodes, &[(&ada, 2)], "only the fresh check and the other login joined").await;
    assert_eq!((fresh.revoked(), other_login.revoked()), (None, None));
}

/// An admin on node 0 subscribes and sees ada join on node 1, open a second session on node 0,
/// then leave one after the other (the last with its reason); after unsubscribing, nothing more,
/// while a second admin still hears of bob.
async fn an_admin_following_presence_sees_one_order_of_joins_and_leaves_over_every_node(cluster: &Cluster) {
    let nodes = cluster.realtime(10).await;
    let (admin, ada, bob) = (unique("admin"), unique("ada"), unique("bob"));
    let (admin_session, join, admin_inbox) = session(&admin, Some("login-0"));
    nodes[0].presence.join(join);
    wait_for_presence(&nodes, &[(&admin, 1)], "the admin joined").await;
    let snapshot = nodes[0].presence.subscribe(&admin_session).await.expect("subscribed");
    assert_eq!(super::sessions_by_user(&snapshot), [(admin.clone(), 1)], "the snapshot to start from");

    // Only events about ada: the admin's own join may be announced after the subscription.
    let told = |n: usize| {
        let (inbox, ada) = (admin_inbox.clone(), ada.clone());
        move || {
            let events = inbox.presence_of(&ada);
            (events.len() >= n).then_some(events)
        }
    };
    let (first, join, _) = session(&ada, Some("login-1"));
    nodes[1].presence.join(join);
    eventually("ada joined", told(1)).await;
    let (second, join, _) = session(&ada, Some("login-2"));
    nodes[0].presence.join(join);
    eventually("ada's second session", told(2)).await;
    nodes[1].presence.leave(&first, LeaveReason::Timeout);
    eventually("ada's first session left", told(3)).await;
    nodes[0].presence.leave(&second, LeaveReason::Slow);
    let events = eventually("ada left", told(4)).await;
    assert_eq!(events, ["joined 1", "sessions 2", "sessions 1", "left slow"]);

    nodes[0].presence.unsubscribe(&admin_session);
    let (other_admin, join, other_inbox) = session(&unique("admin"), Some("login-9"));
    nodes[0].presence.join(join);
    nodes[0].presence.subscribe(&other_admin).await.expect("subscribed");
    let (_, join, _) = session(&bob, Some("login-3"));
    nodes[1].presence.join(join);
    eventually("the other admin hears of bob", || {
        (other_inbox.presence_of(&bob) == ["joined 1"]).then_some(())
    })
    .await;
    assert_eq!(admin_inbox.presence_of(&bob), Vec::<String>::new(), "nothing after unsubscribing");
}

/// Closing node 0 tells each of its sessions (close 1001) and answers how many there were.
async fn closing_a_node_tells_each_of_its_sessions_and_counts_them(cluster: &Cluster) {
    let nodes = cluster.realtime(10).await;
    let inboxes: Vec<Arc<TestInbox>> = [unique("ada"), unique("bob")]
        .iter()
        .map(|user| {
            let (_, join, inbox) = session(user, Some("login"));
            nodes[0].presence.join(join);
            inbox
        })
        .collect();
    assert_eq!(nodes[0].presence.close_all().await, 2, "both sessions of node 0");
    for (n, inbox) in inboxes.iter().enumerate() {
        eventually(&format!("session {n} told to close"), || inbox.shut_down().then_some(())).await;
    }
}

/// Node 0's sockets of ada, counted per login session with the API-key ones apart, and every
/// socket's credential listed for a recheck.
async fn a_nodes_sockets_are_counted_per_login_session(cluster: &Cluster) {
    let nodes = cluster.realtime(10).await;
    let (ada, bob) = (unique("ada"), unique("bob"));
    for (user, login) in
        [(&ada, Some("l-1")), (&ada, Some("l-1")), (&ada, Some("l-2")), (&ada, None), (&bob, Some("l-3"))]
    {
        let (_, join, _) = session(user, login);
        nodes[0].presence.join(join);
    }
    let counts = nodes[0].presence.sockets_by_login_session(&ada).await.expect("counts");
    let expected = [("l-1".to_owned(), 2), ("l-2".to_owned(), 1)].into();
    assert_eq!(counts.by_login_session, expected, "per login session");
    assert_eq!(counts.api_key, 1, "the API-key socket apart");
    let sockets = nodes[0].presence.local_sockets().await.expect("sockets");
    assert_eq!(sockets.len(), 5, "every socket of the node: {sockets:?}");
    let keyed = sockets.iter().filter(|s| s.api_key.is_some() && s.auth_session.is_none()).count();
    assert_eq!(keyed, 1, "the API-key socket carries its key's fingerprint");
}
