//! A flow's connection, whichever server is under test: an edgeim
//! WebSocket (texts 2001, answered 9001, acknowledged 9101) or an MQTT
//! connection (PUBLISH QoS 1, answered PUBACK by the broker, acknowledged
//! by the receiver's own PUBACK). The senders and receivers of
//! [`crate::flow`] and [`crate::sender`] see only [`Conn`], [`WriteSide`]
//! and what a read [`Got`], so each scenario is written once for both.

use std::io::Write;

use edgeim::client::frames::{StatusBody, TYPE_RECEIVE_STATUS, TYPE_SEND_STATUS, TYPE_TEXT};
use edgeim::client::ws::{self, WriteHalf, Ws, is_timeout};
use tungstenite::Message;

use crate::POLL;
use crate::conn::{self, Frame, ack_frame, parse_text_id, text_frame, text_id};
use crate::flow::STAMP_DIGITS;
use crate::mqtt_conn::{Incoming, MqttConn, MqttWriter};
use crate::target::Server;

/// One text to send: sender `index`'s text `seq` from `me` to `to` (edgeim:
/// the user ids; MQTT: the topic), its body `stamp` then `pad`.
pub(crate) struct TextOut<'a> {
    pub(crate) me: &'a str,
    pub(crate) to: &'a str,
    pub(crate) tag: &'a str,
    pub(crate) index: usize,
    pub(crate) seq: u64,
    pub(crate) stamp: u64,
    pub(crate) pad: &'a str,
}

/// Whose answer a 9001 or PUBACK is.
pub(crate) enum Whose {
    /// A text (or receipt) of this run: (sender, seq) from its id.
    Text(usize, u64),
    /// An MQTT packet id ([`packet_id`] of the text's seq).
    Packet(u16),
    /// An id of no text of this run.
    Unknown(String),
}

/// What to send back for a delivered text.
pub(crate) enum Answer {
    /// A 9101, preformatted.
    Receipt(String),
    /// A PUBACK for this packet id.
    PubAck(u16),
    /// Nothing (a QoS 0 message).
    Nothing,
}

/// What one read gave.
pub(crate) enum Got {
    /// A 9001 (to a text or a receipt), or a broker's PUBACK; `refused`
    /// says why when it is not SUCCESS.
    Status {
        whose: Whose,
        refused: Option<String>,
    },
    /// A receipt forwarded to the sender (edgeim only).
    Receipt(Option<(usize, u64)>),
    /// A text for us: (sender, seq) if it is of this run, its stamp (None:
    /// it had none), and what to answer it with.
    Text {
        of_run: Option<(usize, u64)>,
        stamp: Option<u64>,
        answer: Answer,
    },
    /// Something that needs nothing (a ping's answer, a stray SUBACK).
    Nothing,
    /// A frame or packet we cannot read: recorded, the connection goes on.
    Unreadable(String),
    /// The read timed out.
    Idle,
    /// The connection is over (closed or failed): why.
    Gone(String),
}

/// A flow's connection.
pub(crate) enum Conn {
    Ws(Ws),
    Mqtt(MqttConn),
}

/// The writing side of a split connection (a `rate` sender's writer).
pub(crate) enum WriteSide {
    /// Boxed: a WebSocket context is several times an MQTT writer's size.
    Ws(Box<WriteHalf>),
    Mqtt(MqttWriter),
}

/// The MQTT packet id of text `seq`: never 0 (the spec forbids it), and
/// unique among the texts in flight as long as fewer than 65,535 are.
pub(crate) fn packet_id(seq: u64) -> u16 {
    (seq % 65_535) as u16 + 1
}

/// The MQTT topic a group's receivers subscribe to and its sender
/// publishes on: `bench/` and the first receiver's user id.
pub(crate) fn topic(first_receiver: &str) -> String {
    format!("bench/{first_receiver}")
}

/// The MQTT payload of a text: its id, a space, then the body edgeim's
/// text would have (stamp and pad), so both carry the same body bytes.
fn mqtt_payload_parts<'a>(id: &'a str, stamp: &'a str, pad: &'a str) -> [&'a [u8]; 4] {
    [id.as_bytes(), b" ", stamp.as_bytes(), pad.as_bytes()]
}

/// (id, stamp) of an MQTT payload written by [`mqtt_payload_parts`].
pub(crate) fn parse_mqtt_payload(payload: &[u8]) -> Option<(&str, Option<u64>)> {
    let text = std::str::from_utf8(payload).ok()?;
    let (id, body) = text.split_once(' ')?;
    let stamp = body.get(..STAMP_DIGITS).and_then(|s| s.parse().ok());
    Some((id, stamp))
}

impl Conn {
    /// Opens `user`'s connection: an edgeim client registered as
    /// `client_name`, or an MQTT client `user` subscribed to `subscribe`.
    pub(crate) fn open(
        server: Server<'_>,
        user: &str,
        client_name: &str,
        subscribe: Option<&str>,
    ) -> Result<Conn, String> {
        match server {
            Server::Edgeim(t) => conn::open_client(t, user, client_name).map(|o| Conn::Ws(o.ws)),
            Server::Mqtt(t) => MqttConn::open(&t.addr, user, subscribe, POLL).map(Conn::Mqtt),
        }
    }

    /// Writes one text; it goes out at the next [`flush`](Self::flush).
    pub(crate) fn send_text(&mut self, t: &TextOut<'_>) -> Result<(), String> {
        match self {
            Conn::Ws(ws) => write_ws(ws, t),
            Conn::Mqtt(c) => {
                let (id, stamp) = mqtt_strings(t);
                c.publish(
                    t.to,
                    packet_id(t.seq),
                    &mqtt_payload_parts(&id, &stamp, t.pad),
                );
                Ok(())
            }
        }
    }

    /// Writes what was sent since the last flush: one write call.
    pub(crate) fn flush(&mut self) -> Result<(), String> {
        match self {
            Conn::Ws(ws) => ws.flush().map_err(|e| e.to_string()),
            Conn::Mqtt(c) => c.flush().map_err(|e| e.to_string()),
        }
    }

    /// Answers a delivered text, in a write of its own (a browser sends
    /// each 9101 as it handles the text).
    pub(crate) fn answer(&mut self, a: Answer) -> Result<(), String> {
        match (self, a) {
            (Conn::Ws(ws), Answer::Receipt(frame)) => {
                ws.send(Message::text(frame)).map_err(|e| e.to_string())
            }
            (Conn::Mqtt(c), Answer::PubAck(id)) => c.puback(id).map_err(|e| e.to_string()),
            _ => Ok(()),
        }
    }

    /// The next frame or packet, read as `me` in the run tagged `tag`.
    pub(crate) fn next(&mut self, me: &str, tag: &str) -> Got {
        match self {
            Conn::Ws(ws) => next_ws(ws, me, tag),
            Conn::Mqtt(c) => match c.next() {
                Ok(None) => Got::Idle,
                Ok(Some(Incoming::PubAck { id })) => Got::Status {
                    whose: Whose::Packet(id),
                    refused: None,
                },
                Ok(Some(Incoming::Publish { id, payload })) => {
                    let answer = id.map_or(Answer::Nothing, Answer::PubAck);
                    match parse_mqtt_payload(&payload) {
                        Some((text_id, stamp)) => Got::Text {
                            of_run: parse_text_id(tag, text_id),
                            stamp,
                            answer,
                        },
                        // Not one of ours, but the broker wants it acknowledged.
                        None => Got::Text {
                            of_run: None,
                            stamp: None,
                            answer,
                        },
                    }
                }
                Ok(Some(Incoming::Other)) => Got::Nothing,
                Err(e) => Got::Gone(format!("read: {e}")),
            },
        }
    }

    /// From now on this side only reads; see [`WriteSide`].
    pub(crate) fn split(&mut self) -> Result<WriteSide, String> {
        match self {
            Conn::Ws(w) => ws::split(w)
                .map(|h| WriteSide::Ws(Box::new(h)))
                .map_err(|e| e.to_string()),
            Conn::Mqtt(c) => c.split().map(WriteSide::Mqtt).map_err(|e| e.to_string()),
        }
    }

    /// Closes politely (edgeim: Close and a short wait for the server's;
    /// MQTT: DISCONNECT). For a split connection this also ends the writer.
    pub(crate) fn close(self) {
        match self {
            Conn::Ws(ws) => conn::close(ws),
            Conn::Mqtt(c) => c.close(),
        }
    }
}

impl WriteSide {
    pub(crate) fn send_text(&mut self, t: &TextOut<'_>) -> Result<(), String> {
        match self {
            WriteSide::Ws(h) => {
                h.ws.write(Message::text(text_frame(
                    &text_id(t.tag, t.index, t.seq),
                    t.me,
                    t.to,
                    t.stamp,
                    t.pad,
                )))
                .map_err(|e| e.to_string())
            }
            WriteSide::Mqtt(w) => {
                let (id, stamp) = mqtt_strings(t);
                w.publish(
                    t.to,
                    packet_id(t.seq),
                    &mqtt_payload_parts(&id, &stamp, t.pad),
                );
                Ok(())
            }
        }
    }

    pub(crate) fn flush(&mut self) -> Result<(), String> {
        match self {
            WriteSide::Ws(h) => h.ws.flush().map_err(|e| e.to_string()),
            WriteSide::Mqtt(w) => w.flush().map_err(|e| e.to_string()),
        }
    }

    /// What the reading side wants written (its Pong, Close or
    /// DISCONNECT); disconnected once that side is dropped.
    pub(crate) fn handed_over(&self) -> &crossbeam_channel::Receiver<Vec<u8>> {
        match self {
            WriteSide::Ws(h) => &h.from_reader,
            WriteSide::Mqtt(w) => &w.from_reader,
        }
    }

    /// Writes bytes the reading side handed over, as they are.
    pub(crate) fn write_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            WriteSide::Ws(h) => h.ws.get_mut().write_all(bytes),
            WriteSide::Mqtt(w) => w.tcp.write_all(bytes),
        }
    }
}

fn write_ws(ws: &mut Ws, t: &TextOut<'_>) -> Result<(), String> {
    let id = text_id(t.tag, t.index, t.seq);
    ws.write(Message::text(text_frame(&id, t.me, t.to, t.stamp, t.pad)))
        .map_err(|e| e.to_string())
}

/// A text's id and its stamp in [`STAMP_DIGITS`] digits.
fn mqtt_strings(t: &TextOut<'_>) -> (String, String) {
    (
        text_id(t.tag, t.index, t.seq),
        format!("{:0w$}", t.stamp, w = STAMP_DIGITS),
    )
}

fn next_ws(ws: &mut Ws, me: &str, tag: &str) -> Got {
    let text = match ws.read() {
        Ok(Message::Text(t)) => t,
        Ok(Message::Close(f)) => return Got::Gone(format!("closed by the server: {f:?}")),
        Ok(_) => return Got::Nothing,
        Err(e) if is_timeout(&e) => return Got::Idle,
        Err(e) => return Got::Gone(format!("read: {e}")),
    };
    let Ok(f) = serde_json::from_str::<Frame>(&text) else {
        return Got::Unreadable("unreadable frame".into());
    };
    match f.kind {
        TYPE_SEND_STATUS => {
            let status = StatusBody::of(&f.body);
            Got::Status {
                whose: match parse_text_id(tag, &f.id) {
                    Some((i, n)) => Whose::Text(i, n),
                    None => Whose::Unknown(f.id.to_string()),
                },
                refused: (status.code != 200).then(|| status.to_string()),
            }
        }
        TYPE_RECEIVE_STATUS => Got::Receipt(parse_text_id(tag, &f.id)),
        TYPE_TEXT => Got::Text {
            of_run: parse_text_id(tag, &f.id),
            stamp: f
                .body
                .get(..STAMP_DIGITS)
                .and_then(|s| s.parse::<u64>().ok()),
            answer: Answer::Receipt(ack_frame(&f.id, me, &f.from)),
        },
        other => Got::Unreadable(format!("got type {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packet_ids_are_never_zero_and_wrap_after_65535() {
        assert_eq!(packet_id(0), 1);
        assert_eq!(packet_id(65_534), 65_535);
        assert_eq!(packet_id(65_535), 1);
    }

    #[test]
    fn an_mqtt_payload_carries_the_id_and_the_stamp() {
        let parts = mqtt_payload_parts("t.1.2", "00000000000000000042", "xx");
        let payload: Vec<u8> = parts.concat();
        assert_eq!(parse_mqtt_payload(&payload), Some(("t.1.2", Some(42))));
        assert_eq!(parse_mqtt_payload(b"no-space"), None);
        assert_eq!(parse_mqtt_payload(b"id 12"), Some(("id", None)));
        assert_eq!(parse_mqtt_payload(&[0xff, b' ']), None);
    }
}
