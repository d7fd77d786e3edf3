//! Opaque cursors: the sort key of the last row and the ordering it belongs to, base64url.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use callboard_catalog::vocabulary::Order;

fn tag(order: Order) -> char {
    match order {
        Order::Ref => 'r',
        Order::Name => 'n',
        Order::UpdatedDesc => 'u',
        Order::Relevance => 'v',
    }
}

/// The cursor after a row with sort key `key`.
pub fn encode(key: &str, order: Order) -> String {
    let mut text = String::with_capacity(key.len() + 2);
    text.push(tag(order));
    text.push(':');
    text.push_str(key);
    URL_SAFE_NO_PAD.encode(text)
}

/// The sort key in a cursor, if it is one of `order`.
pub fn decode(cursor: &str, order: Order) -> Option<String> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (t, key) = text.split_once(':')?;
    (t.len() == 1 && t.starts_with(tag(order))).then(|| key.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_belong_to_their_ordering() {
        let key = "component:default/a\u{0}2026";
        let c = encode(key, Order::Name);
        assert_eq!(decode(&c, Order::Name).as_deref(), Some(key));
        assert_eq!(decode(&c, Order::Ref), None);
        assert_eq!(decode("not base64!", Order::Ref), None);
        let ranked = encode("0\u{0}component:default/a", Order::Relevance);
        assert_eq!(
            decode(&ranked, Order::Relevance).as_deref(),
            Some("0\u{0}component:default/a")
        );
        assert_eq!(decode(&ranked, Order::Name), None);
    }
}
