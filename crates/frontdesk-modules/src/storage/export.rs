//! A transcript as CSV (RFC 4180): a header row, then one row per message in `seq` order,
//! CRLF line ends. A field holding a comma, a quote, CR or LF is quoted and its quotes
//! doubled, so content with any of them comes back intact in a spreadsheet or CSV reader.

use frontdesk_core::history::Transcript;

const HEADER: [&str; 8] =
    ["messageId", "seq", "sendTime", "messageType", "senderId", "senderName", "content", "clientMessageId"];

fn field(out: &mut String, value: &str) {
    if value.contains([',', '"', '\r', '\n']) {
        out.push('"');
        out.push_str(&value.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(value);
    }
}

fn row<'a>(out: &mut String, fields: impl IntoIterator<Item = &'a str>) {
    for (i, f) in fields.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        field(out, f);
    }
    out.push_str("\r\n");
}

pub(super) fn transcript_csv(t: &Transcript) -> String {
    let mut out = String::new();
    row(&mut out, HEADER);
    for m in &t.messages {
        let (id, seq, kind, sender) =
            (m.id.to_string(), m.seq.to_string(), m.message_type.to_string(), m.sender_id.to_string());
        row(
            &mut out,
            [
                id.as_str(),
                seq.as_str(),
                m.send_time.as_str(),
                kind.as_str(),
                sender.as_str(),
                m.sender_name.as_str(),
                m.content.as_str(),
                m.client_message_id.as_deref().unwrap_or(""),
            ],
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_with_separators_are_quoted() {
        let mut out = String::new();
        row(&mut out, ["plain", "a,b", "say \"hi\"", "two\nlines", ""]);
        assert_eq!(out, "plain,\"a,b\",\"say \"\"hi\"\"\",\"two\nlines\",\r\n");
    }
}
