//! MQTT 3.1.1 on the wire, free of I/O: the packets the generator writes
//! (CONNECT, SUBSCRIBE, PUBLISH QoS 1, PUBACK, DISCONNECT) and the decoding
//! of what a broker sends back. Only what `--mqtt` needs: no QoS 2, no
//! will, no user names (a benchmark broker allows anonymous clients).
//! [`crate::mqtt_conn`] puts it over a TcpStream.

/// Packet types (the high nibble of the first byte).
pub(crate) const CONNECT: u8 = 1;
pub(crate) const CONNACK: u8 = 2;
pub(crate) const PUBLISH: u8 = 3;
pub(crate) const PUBACK: u8 = 4;
pub(crate) const SUBSCRIBE: u8 = 8;
pub(crate) const SUBACK: u8 = 9;
pub(crate) const PINGRESP: u8 = 13;
pub(crate) const DISCONNECT: u8 = 14;

/// The largest remaining length the varint can say (4 bytes of 7 bits).
pub(crate) const MAX_REMAINING: usize = 268_435_455;
/// The largest packet the generator accepts from a broker: its own texts
/// are a few hundred bytes, and a bigger one would only grow the buffer.
pub(crate) const MAX_PACKET: usize = 1 << 20;

/// A broker's packet, decoded. Borrowed from the read buffer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Packet<'a> {
    /// The answer to CONNECT: 0 is accepted.
    ConnAck {
        code: u8,
    },
    /// The answer to SUBSCRIBE: one granted QoS (or 0x80) per filter.
    SubAck {
        id: u16,
        codes: &'a [u8],
    },
    /// A message for us; `id` is set for QoS 1 and 2.
    Publish {
        qos: u8,
        id: Option<u16>,
        topic: &'a [u8],
        payload: &'a [u8],
    },
    /// The broker has our QoS 1 PUBLISH `id`.
    PubAck {
        id: u16,
    },
    PingResp,
    /// Any other type, well framed: skipped.
    Other {
        kind: u8,
    },
}

/// Why a broker's bytes are not MQTT. The connection cannot go on.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Malformed {
    /// The remaining-length varint has a fifth byte.
    LengthTooLong,
    /// Bigger than [`MAX_PACKET`].
    TooBig(usize),
    /// The packet is shorter than its type needs.
    Short(u8),
}

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Malformed::LengthTooLong => write!(f, "MQTT remaining length over 4 bytes"),
            Malformed::TooBig(n) => write!(f, "MQTT packet of {n} bytes (at most {MAX_PACKET})"),
            Malformed::Short(t) => write!(f, "MQTT packet of type {t} too short"),
        }
    }
}

/// Appends `n` as the remaining-length varint (7 bits a byte, low first).
/// Callers never pass more than [`MAX_REMAINING`]; bigger is cut to it.
pub(crate) fn put_length(out: &mut Vec<u8>, n: usize) {
    let mut n = n.min(MAX_REMAINING);
    loop {
        let byte = (n % 128) as u8;
        n /= 128;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// The remaining length at the start of `buf`: Ok(None) if more bytes are
/// needed, else (length, bytes the varint took).
pub(crate) fn get_length(buf: &[u8]) -> Result<Option<(usize, usize)>, Malformed> {
    let mut n = 0usize;
    for (i, b) in buf.iter().enumerate().take(4) {
        n += ((b & 0x7f) as usize) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(Some((n, i + 1)));
        }
    }
    if buf.len() >= 4 {
        Err(Malformed::LengthTooLong)
    } else {
        Ok(None)
    }
}

/// A UTF-8 string field: two bytes of length, then the bytes.
fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    let s = &s[..s.len().min(u16::MAX as usize)];
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s);
}

/// CONNECT with a clean session and keepalive 0 (the broker never expects
/// a ping: runs are bounded, and a ping would be traffic that edgeim's
/// side does not have).
pub(crate) fn connect(client_id: &str) -> Vec<u8> {
    let mut body = Vec::with_capacity(12 + client_id.len());
    put_str(&mut body, b"MQTT");
    body.push(4); // protocol level: 3.1.1
    body.push(0x02); // flags: clean session
    body.extend_from_slice(&0u16.to_be_bytes()); // keepalive: off
    put_str(&mut body, client_id.as_bytes());
    packet(CONNECT << 4, &body)
}

/// SUBSCRIBE to one filter at QoS 1.
pub(crate) fn subscribe(id: u16, filter: &str) -> Vec<u8> {
    let mut body = Vec::with_capacity(5 + filter.len());
    body.extend_from_slice(&id.to_be_bytes());
    put_str(&mut body, filter.as_bytes());
    body.push(1);
    // SUBSCRIBE's flags are fixed at 0b0010 by the spec.
    packet((SUBSCRIBE << 4) | 0x02, &body)
}

/// Appends a QoS 1 PUBLISH of `payload` parts (written one after another,
/// so the caller need not join them first).
pub(crate) fn put_publish(out: &mut Vec<u8>, topic: &str, id: u16, payload: &[&[u8]]) {
    let len = 2 + topic.len() + 2 + payload.iter().map(|p| p.len()).sum::<usize>();
    out.push((PUBLISH << 4) | 0x02); // QoS 1, not DUP, not RETAIN
    put_length(out, len);
    put_str(out, topic.as_bytes());
    out.extend_from_slice(&id.to_be_bytes());
    for p in payload {
        out.extend_from_slice(p);
    }
}

pub(crate) fn puback(id: u16) -> [u8; 4] {
    let [hi, lo] = id.to_be_bytes();
    [PUBACK << 4, 2, hi, lo]
}

pub(crate) fn disconnect() -> [u8; 2] {
    [DISCONNECT << 4, 0]
}

fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 5);
    out.push(first);
    put_length(&mut out, body.len());
    out.extend_from_slice(body);
    out
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// The first packet in `buf`: Ok(None) if it is not all there yet, else
/// the packet and how many bytes it took. Never panics, whatever `buf` is.
pub(crate) fn decode(buf: &[u8]) -> Result<Option<(Packet<'_>, usize)>, Malformed> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let Some((len, varint)) = get_length(&buf[1..])? else {
        return Ok(None);
    };
    if len > MAX_PACKET {
        return Err(Malformed::TooBig(len));
    }
    let start = 1 + varint;
    let Some(body) = buf.get(start..start + len) else {
        return Ok(None);
    };
    let kind = first >> 4;
    let short = || Malformed::Short(kind);
    let p = match kind {
        CONNACK => Packet::ConnAck {
            code: *body.get(1).ok_or_else(short)?,
        },
        SUBACK => Packet::SubAck {
            id: u16_at(body, 0).ok_or_else(short)?,
            codes: &body[2..],
        },
        PUBACK => Packet::PubAck {
            id: u16_at(body, 0).ok_or_else(short)?,
        },
        PUBLISH => {
            let qos = (first >> 1) & 0x03;
            let topic_len = u16_at(body, 0).ok_or_else(short)? as usize;
            let topic = body.get(2..2 + topic_len).ok_or_else(short)?;
            let mut at = 2 + topic_len;
            let id = if qos > 0 {
                let id = u16_at(body, at).ok_or_else(short)?;
                at += 2;
                Some(id)
            } else {
                None
            };
            Packet::Publish {
                qos,
                id,
                topic,
                payload: &body[at..],
            }
        }
        PINGRESP => Packet::PingResp,
        kind => Packet::Other { kind },
    };
    Ok(Some((p, start + len)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaining_lengths_round_trip_at_every_varint_size() {
        for n in [
            0,
            1,
            127,
            128,
            16_383,
            16_384,
            2_097_151,
            2_097_152,
            MAX_REMAINING,
        ] {
            let mut b = Vec::new();
            put_length(&mut b, n);
            let want = match n {
                0..=127 => 1,
                128..=16_383 => 2,
                16_384..=2_097_151 => 3,
                _ => 4,
            };
            assert_eq!(b.len(), want, "{n}");
            assert_eq!(get_length(&b), Ok(Some((n, want))));
            // Any prefix asks for more bytes.
            assert_eq!(get_length(&b[..want - 1]), Ok(None));
        }
        assert_eq!(
            get_length(&[0xff, 0xff, 0xff, 0xff, 0x01]),
            Err(Malformed::LengthTooLong)
        );
    }

    #[test]
    fn the_spec_examples_encode_as_the_spec_says() {
        // 321 = 0xC1 0x02 (MQTT 3.1.1 section 2.2.3's scheme).
        let mut b = Vec::new();
        put_length(&mut b, 321);
        assert_eq!(b, [0xc1, 0x02]);
        assert_eq!(
            connect("u0"),
            [
                0x10, 14, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 0, 0, 2, b'u', b'0'
            ]
        );
        assert_eq!(
            subscribe(1, "a/b"),
            [0x82, 8, 0, 1, 0, 3, b'a', b'/', b'b', 1]
        );
        assert_eq!(puback(0x1234), [0x40, 2, 0x12, 0x34]);
        assert_eq!(disconnect(), [0xe0, 0]);
    }

    #[test]
    fn a_publish_decodes_to_what_was_encoded() {
        let mut b = Vec::new();
        put_publish(&mut b, "bench/u1", 7, &[b"id ", b"payload"]);
        let (p, used) = decode(&b).unwrap().unwrap();
        assert_eq!(used, b.len());
        assert_eq!(
            p,
            Packet::Publish {
                qos: 1,
                id: Some(7),
                topic: b"bench/u1",
                payload: b"id payload"
            }
        );
        // Two packets back to back: the first, then the second.
        b.extend_from_slice(&puback(9));
        let (_, used) = decode(&b).unwrap().unwrap();
        assert_eq!(
            decode(&b[used..]).unwrap(),
            Some((Packet::PubAck { id: 9 }, 4))
        );
    }

    #[test]
    fn the_brokers_answers_decode() {
        assert_eq!(
            decode(&[0x20, 2, 0, 0]).unwrap(),
            Some((Packet::ConnAck { code: 0 }, 4))
        );
        assert_eq!(
            decode(&[0x90, 3, 0, 1, 1]).unwrap(),
            Some((Packet::SubAck { id: 1, codes: &[1] }, 5))
        );
        assert_eq!(decode(&[0xd0, 0]).unwrap(), Some((Packet::PingResp, 2)));
        // QoS 0 has no packet id.
        assert_eq!(
            decode(&[0x30, 4, 0, 1, b't', b'x']).unwrap(),
            Some((
                Packet::Publish {
                    qos: 0,
                    id: None,
                    topic: b"t",
                    payload: b"x"
                },
                6
            ))
        );
    }

    #[test]
    fn malformed_or_partial_input_never_panics() {
        assert_eq!(decode(&[]), Ok(None));
        assert_eq!(decode(&[0x40]), Ok(None));
        assert_eq!(decode(&[0x40, 2, 0]), Ok(None));
        assert_eq!(decode(&[0x40, 1, 0]), Err(Malformed::Short(PUBACK)));
        assert_eq!(decode(&[0x20, 0]), Err(Malformed::Short(CONNACK)));
        // A topic longer than the packet.
        assert_eq!(
            decode(&[0x32, 3, 0, 9, b'a']),
            Err(Malformed::Short(PUBLISH))
        );
        assert_eq!(
            decode(&[0x30, 0xff, 0xff, 0x7f]),
            Err(Malformed::TooBig(2_097_151))
        );
        // Every prefix and every byte string of a small alphabet: no panic.
        let mut b = Vec::new();
        put_publish(&mut b, "t", 1, &[b"xyz"]);
        for cut in 0..b.len() {
            assert_eq!(decode(&b[..cut]), Ok(None));
        }
        let alphabet = [0x00, 0x02, 0x30, 0x32, 0x40, 0x7f, 0x80, 0x90, 0xff];
        let mut input = [0u8; 5];
        for i in 0..alphabet.len().pow(5) {
            let mut k = i;
            for slot in input.iter_mut() {
                *slot = alphabet[k % alphabet.len()];
                k /= alphabet.len();
            }
            if let Ok(Some((_, used))) = decode(&input) {
                assert!(used <= input.len());
            }
        }
    }
}
