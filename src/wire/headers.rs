//! The text a hook or a push shows the model about waiting messages
//! (docs/PROTOCOL.md, "Delivery and wake"): one header line per message
//! (id, sender, channel or "DM", kind, a summary of at most
//! [`SUMMARY_CHARS`] characters), the dead letters the agent sent, and
//! how to read the rest. Bodies only when asked. The whole text stays
//! within a character budget; what does not fit is counted in a last
//! line "… and N more". Pure functions, so the hub (which decides what
//! was shown) and the clients format the same way.

use super::Message;

/// Longest summary of a body in a header line, in characters.
pub const SUMMARY_CHARS: usize = 120;

/// The budget of a hook's text, in characters.
pub const HOOK_TEXT_CHARS: usize = 10_000;

/// Longest body shown with `--bodies`, in characters (one message can
/// never take the whole budget).
pub const BODY_CHARS: usize = 2_000;

/// A DM that reached nobody: its recipient never had a session.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadNote {
    pub message_id: i64,
    pub to_agent: String,
    /// The closest id the hub knows, if one is close.
    pub suggestion: Option<String>,
}

/// `s` cut to `max` characters, with `…` when cut; newlines become spaces.
pub fn summary(s: &str, max: usize) -> String {
    let flat: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let flat = flat.trim();
    if flat.chars().count() <= max {
        return flat.to_string();
    }
    let mut out: String = flat.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// One header line.
pub fn line(m: &Message, bodies: bool) -> String {
    let place = if m.to_agent.is_some() {
        "DM".to_string()
    } else {
        format!("#{}", m.channel)
    };
    let mut s = format!(
        "- #{} from {} in {} ({}): {}",
        m.id,
        m.from_agent,
        place,
        m.kind,
        summary(&m.body, SUMMARY_CHARS)
    );
    if bodies && m.body.chars().count() > SUMMARY_CHARS {
        s.push_str("\n  body: ");
        s.push_str(&summary(&m.body, BODY_CHARS));
    }
    s
}

/// The line for a dead letter.
pub fn dead_line(d: &DeadNote) -> String {
    match &d.suggestion {
        Some(s) => format!(
            "- no agent '{}': did you mean '{s}'? (your DM #{} reached nobody)",
            d.to_agent, d.message_id
        ),
        None => format!(
            "- no agent '{}' has ever signed in (your DM #{} reached nobody)",
            d.to_agent, d.message_id
        ),
    }
}

/// How to read bodies.
pub fn how_to_read(agent: &str, after_id: i64) -> String {
    format!(
        "Read them with `arc poll --agent {agent} --since-id {after_id}` or the arc_poll_messages MCP tool."
    )
}

/// The text for `messages` (oldest first) and `dead`, within `budget`
/// characters. Returns the text and how many messages it shows (always a
/// prefix of `messages`); `more` counts pending messages beyond
/// `messages` that the caller did not fetch.
pub fn compose(
    agent: &str,
    messages: &[Message],
    more: usize,
    dead: &[DeadNote],
    bodies: bool,
    budget: usize,
) -> (String, usize) {
    let total = messages.len() + more;
    let head = match total {
        0 => format!("Arc: news for {agent}:"),
        1 => format!("Arc: 1 new message for {agent} (headers only):"),
        n => format!("Arc: {n} new messages for {agent} (headers only):"),
    };
    let after = messages.first().map(|m| m.id - 1).unwrap_or(0);
    let footer = how_to_read(agent, after.max(0));
    // The last line, at its longest: "… and N more".
    let tail_max = format!("… and {total} more").chars().count();
    let mut lines = vec![head];
    for d in dead {
        lines.push(dead_line(d));
    }
    let fixed = |lines: &[String]| lines.iter().map(|l| l.chars().count() + 1).sum::<usize>();
    let mut shown = 0;
    for m in messages {
        let l = line(m, bodies);
        let room = budget.saturating_sub(footer.chars().count() + 1 + tail_max + 1);
        // The first message is always shown, cut to the budget if need be,
        // so a small budget still makes progress.
        if shown > 0 && fixed(&lines) + l.chars().count() + 1 > room {
            break;
        }
        lines.push(l);
        shown += 1;
    }
    if total > 0 {
        lines.push(footer);
    }
    if shown < total {
        lines.push(format!("… and {} more", total - shown));
    }
    let mut text = lines.join("\n");
    if text.chars().count() > budget {
        text = text.chars().take(budget).collect();
    }
    (text, shown)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(id: i64, from: &str, to: Option<&str>, body: &str) -> Message {
        Message {
            id,
            from_agent: from.into(),
            to_agent: to.map(str::to_string),
            channel: if to.is_some() { "direct" } else { "general" }.into(),
            kind: "chat".into(),
            body: body.into(),
            ..Message::default()
        }
    }

    #[test]
    fn a_line_has_id_sender_place_kind_and_a_short_summary() {
        let m = msg(7, "alice", Some("bob"), &"x".repeat(500));
        let l = line(&m, false);
        assert!(l.starts_with("- #7 from alice in DM (chat): xxx"), "{l}");
        assert!(l.ends_with('…'));
        assert_eq!(
            summary(&"y".repeat(500), SUMMARY_CHARS).chars().count(),
            120
        );
        let b = line(&msg(8, "carol", None, "two\nlines"), false);
        assert_eq!(b, "- #8 from carol in #general (chat): two lines");
        assert!(!line(&m, false).contains("body:"));
        assert!(line(&m, true).contains("body: "));
    }

    #[test]
    fn the_text_keeps_its_budget_and_counts_what_it_left_out() {
        let many: Vec<Message> = (1..=500)
            .map(|i| msg(i, "alice", None, &"z".repeat(300)))
            .collect();
        let (text, shown) = compose("bob", &many, 0, &[], false, HOOK_TEXT_CHARS);
        assert!(text.chars().count() <= HOOK_TEXT_CHARS, "{}", text.len());
        assert!(shown > 10 && shown < 500, "{shown}");
        assert!(
            text.ends_with(&format!("… and {} more", 500 - shown)),
            "{text}"
        );
        assert!(text.contains("arc poll --agent bob --since-id 0"));
        assert_eq!(text.lines().filter(|l| l.starts_with("- #")).count(), shown);
        let (small, n) = compose("bob", &many[..2], 0, &[], false, HOOK_TEXT_CHARS);
        assert_eq!(n, 2);
        assert!(!small.contains("more"));
        assert!(small.ends_with("MCP tool."), "{small}");
        let (more, n) = compose("bob", &many[..2], 3, &[], false, HOOK_TEXT_CHARS);
        assert_eq!(n, 2);
        assert!(more.ends_with("… and 3 more"), "{more}");
    }

    #[test]
    fn a_budget_too_small_for_one_line_still_shows_the_first_message() {
        let long = msg(9, &"x".repeat(150), None, &"y".repeat(300));
        let (text, shown) = compose("bob", &[long], 0, &[], false, 200);
        assert_eq!(shown, 1, "progress even when nothing fits");
        assert_eq!(text.chars().count(), 200);
        assert!(text.contains("- #9 from xxx"), "{text}");
    }

    #[test]
    fn dead_letters_name_the_closest_id() {
        let d = DeadNote {
            message_id: 4,
            to_agent: "bbo".into(),
            suggestion: Some("bob".into()),
        };
        let (text, shown) = compose("alice", &[], 0, &[d], false, HOOK_TEXT_CHARS);
        assert_eq!(shown, 0);
        assert!(
            text.contains("no agent 'bbo': did you mean 'bob'?"),
            "{text}"
        );
    }
}
