//! The session cap's contract (`session_cap.lua` against `LocalSessionCap`): a user holds at
//! most the cap's places over every node, reserved atomically, and a dropped place comes back.

use futures_util::future::join_all;

use super::{Cluster, NODES, eventually_async, on_every_engine, unique};

on_every_engine!(
    a_user_holds_at_most_the_cap_over_every_node_and_a_dropped_place_comes_back,
    parallel_reservations_on_every_node_never_pass_the_cap,
);

/// Three places taken on alternating nodes fill the cap on both; another user has their own;
/// dropping one place on one node frees it on the other.
async fn a_user_holds_at_most_the_cap_over_every_node_and_a_dropped_place_comes_back(cluster: &Cluster) {
    let nodes = cluster.realtime(3).await;
    let (ada, bob) = (unique("ada"), unique("bob"));
    let mut places = Vec::new();
    for n in 0..3 {
        let place = nodes[n % NODES].session_cap.reserve(&ada).await;
        places.push(place.unwrap_or_else(|| panic!("place {} of 3", n + 1)));
    }
    for (n, node) in nodes.iter().enumerate() {
        assert!(node.session_cap.reserve(&ada).await.is_none(), "the cap is full on node {n}");
    }
    assert!(nodes[1].session_cap.reserve(&bob).await.is_some(), "another user has places of their own");

    // The second place was taken on node 1.
    drop(places.remove(1));
    let place = eventually_async("the dropped place to come back on node 0", || async {
        nodes[0].session_cap.reserve(&ada).await
    })
    .await;
    places.push(place);
    assert!(nodes[1].session_cap.reserve(&ada).await.is_none(), "and the cap is full again");
}

/// Twenty reservations of one user at once over both nodes: exactly the cap's five succeed, and
/// once they are all dropped, five can be taken again.
async fn parallel_reservations_on_every_node_never_pass_the_cap(cluster: &Cluster) {
    let nodes = cluster.realtime(5).await;
    let user = unique("crowd");
    let reservations = (0..20).map(|n| nodes[n % NODES].session_cap.reserve(&user));
    let places: Vec<_> = join_all(reservations).await.into_iter().flatten().collect();
    assert_eq!(places.len(), 5, "twenty at once, five places");
    drop(places);

    let mut again = Vec::new();
    while again.len() < 5 {
        let node = &nodes[again.len() % NODES];
        let place = eventually_async("a dropped place to come back", || async {
            node.session_cap.reserve(&user).await
        })
        .await;
        again.push(place);
    }
    assert!(nodes[0].session_cap.reserve(&user).await.is_none(), "and no sixth");
}
