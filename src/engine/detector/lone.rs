//! Records that hold no event: a JSON object (or MessagePack map) of one
//! string member (`{"log": "…"}`), recognised from a few bytes without
//! reading the record.

/// The member name of a JSON record that is an object of exactly one member
/// holding a string (`{"log": "…"}`), else `None`. Most records are decided
/// by their last two non-blank bytes (a parsed event seldom ends `"}`).
/// A name with escapes is not recognised.
pub(super) fn lone_string_member_json(r: &[u8]) -> Option<&[u8]> {
    let blank = |b: u8| matches!(b, b' ' | b'\t' | b'\r' | b'\n');
    let mut end = r.len();
    while end > 0 && blank(r[end - 1]) {
        end -= 1;
    }
    if end < 2 || r[end - 1] != b'}' {
        return None;
    }
    end -= 1;
    while end > 0 && blank(r[end - 1]) {
        end -= 1;
    }
    if end == 0 || r[end - 1] != b'"' {
        return None;
    }
    // `end` is just past the closing quote of the last value.
    let mut i = 0;
    let skip = |i: &mut usize| {
        while *i < end && blank(r[*i]) {
            *i += 1;
        }
    };
    let expect = |i: &mut usize, c: u8| -> Option<()> {
        skip(i);
        (*i < end && r[*i] == c).then(|| *i += 1)
    };
    expect(&mut i, b'{')?;
    expect(&mut i, b'"')?;
    let k = memchr::memchr2(b'"', b'\\', &r[i..end])?;
    if r[i + k] != b'"' {
        return None;
    }
    let key = &r[i..i + k];
    i += k + 1;
    expect(&mut i, b':')?;
    expect(&mut i, b'"')?;
    loop {
        let k = memchr::memchr2(b'"', b'\\', &r[i..end])?;
        if r[i + k] == b'\\' {
            i += k + 2;
            if i >= end {
                return None;
            }
        } else {
            i += k + 1;
            break;
        }
    }
    (i == end).then_some(key)
}

/// The member name of a MessagePack body that is a map of exactly one member
/// holding a string, else `None` (decided by the first byte for most).
pub(super) fn lone_string_member_msgpack(b: &[u8]) -> Option<&[u8]> {
    let rest = match *b.first()? {
        0x81 => &b[1..],
        0xde if b.get(1..3)? == [0, 1] => &b[3..],
        0xdf if b.get(1..5)? == [0, 0, 0, 1] => &b[5..],
        _ => return None,
    };
    let (key, rest) = msgpack_str(rest)?;
    let (_, rest) = msgpack_str(rest)?;
    rest.is_empty().then_some(key)
}

/// A MessagePack string at the start of `b`: its bytes and what follows.
pub(super) fn msgpack_str(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let be = |r: std::ops::Range<usize>| -> Option<usize> {
        Some(b.get(r)?.iter().fold(0usize, |n, &x| n << 8 | x as usize))
    };
    let (len, head): (usize, usize) = match *b.first()? {
        m @ 0xa0..=0xbf => ((m & 0x1f) as usize, 1),
        0xd9 => (be(1..2)?, 2),
        0xda => (be(1..3)?, 3),
        0xdb => (be(1..5)?, 5),
        _ => return None,
    };
    let s = b.get(head..head.checked_add(len)?)?;
    Some((s, &b[head + len..]))
}
