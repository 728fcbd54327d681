//! The validating reader ([`FieldTable::extract`]): serde_json's parser
//! driven through seeds that descend only into the table's paths and skip
//! every other member without building it (see the module docs of
//! [`crate::format::event`]).

use super::*;

impl FieldTable {
    /// Extract the values of every slot from one JSON record: the validating
    /// reader (see the module docs). The top level must be an object, and the
    /// whole record valid UTF-8. Values borrow from `record` where no
    /// unescaping was needed.
    pub fn extract<'a>(&self, record: &'a [u8], out: &mut Fields<'a>) -> Result<(), ExtractError> {
        out.clear();
        // serde_json checks UTF-8 only in the strings it reads, not in the
        // members it skips; a record that is not UTF-8 is not JSON at all.
        if std::str::from_utf8(record).is_err() {
            return Err(ExtractError::InvalidJson);
        }
        let mut de = serde_json::Deserializer::from_slice(record);
        let seed = TopSeed { table: self, out };
        seed.deserialize(&mut de).map_err(classify)?;
        de.end().map_err(classify)?;
        Ok(())
    }
}

pub(super) fn classify(e: serde_json::Error) -> ExtractError {
    let msg = e.to_string();
    if msg.starts_with(NOT_OBJECT) {
        ExtractError::NotAnObject
    } else if msg.starts_with("recursion limit exceeded") {
        ExtractError::TooDeep
    } else {
        ExtractError::InvalidJson
    }
}

pub(super) const NOT_OBJECT: &str = "apt-netcon: top level is not an object";

pub(super) struct TopSeed<'t, 'f, 'a> {
    table: &'t FieldTable,
    out: &'f mut Fields<'a>,
}

impl<'de, 't, 'f> DeserializeSeed<'de> for TopSeed<'t, 'f, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(TopVisitor(self))
    }
}

pub(super) struct TopVisitor<'t, 'f, 'a>(TopSeed<'t, 'f, 'a>);

impl<'de, 't, 'f> Visitor<'de> for TopVisitor<'t, 'f, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        visit_object(self.0.table, 0, self.0.out, map)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Err(E::custom(NOT_OBJECT))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Err(E::custom(NOT_OBJECT))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Err(E::custom(NOT_OBJECT))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Err(E::custom(NOT_OBJECT))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Err(E::custom(NOT_OBJECT))
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom(NOT_OBJECT))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Err(de::Error::custom(NOT_OBJECT))
    }
}

/// A member name, borrowed from the record unless it holds an escape.
/// (`next_key::<Cow<str>>` would copy every name: serde's `Cow` impl always
/// deserializes to `Owned`.)
pub(crate) struct MemberName;

impl<'de> DeserializeSeed<'de> for MemberName {
    type Value = Cow<'de, str>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Cow<'de, str>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for MemberName {
    type Value = Cow<'de, str>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a member name")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v))
    }
}

pub(super) fn visit_object<'de, A: MapAccess<'de>>(
    table: &FieldTable,
    node: u32,
    out: &mut Fields<'de>,
    mut map: A,
) -> Result<(), A::Error> {
    while let Some(key) = map.next_key_seed(MemberName)? {
        match table.walk(node, &key) {
            Some(n) => map.next_value_seed(ValueSeed { table, node: n, out })?,
            None => {
                map.next_value::<IgnoredAny>()?;
            }
        }
    }
    Ok(())
}

/// Reads the value at trie node `node`: stores scalars when the node is a
/// slot, descends into objects when the node has children.
pub(super) struct ValueSeed<'t, 'f, 'a> {
    table: &'t FieldTable,
    node: u32,
    out: &'f mut Fields<'a>,
}

impl<'t, 'f, 'a> ValueSeed<'t, 'f, 'a> {
    pub(super) fn slot(&self) -> Option<Slot> {
        self.table.nodes[self.node as usize].slot
    }
    pub(super) fn push(&mut self, v: Scalar<'a>) {
        if let Some(s) = self.slot() {
            self.out.push(s, v);
        }
    }
}

impl<'de, 't, 'f> DeserializeSeed<'de> for ValueSeed<'t, 'f, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, 't, 'f> Visitor<'de> for ValueSeed<'t, 'f, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(mut self, v: bool) -> Result<(), E> {
        self.push(Scalar::Bool(v));
        Ok(())
    }
    fn visit_i64<E: de::Error>(mut self, v: i64) -> Result<(), E> {
        self.push(Scalar::Int(v));
        Ok(())
    }
    fn visit_u64<E: de::Error>(mut self, v: u64) -> Result<(), E> {
        self.push(match i64::try_from(v) {
            Ok(i) => Scalar::Int(i),
            Err(_) => Scalar::UInt(v),
        });
        Ok(())
    }
    fn visit_f64<E: de::Error>(mut self, v: f64) -> Result<(), E> {
        self.push(Scalar::Float(v));
        Ok(())
    }
    fn visit_borrowed_str<E: de::Error>(mut self, v: &'de str) -> Result<(), E> {
        self.push(Scalar::Str(Cow::Borrowed(v)));
        Ok(())
    }
    fn visit_str<E: de::Error>(mut self, v: &str) -> Result<(), E> {
        if self.slot().is_some() {
            self.push(Scalar::Str(Cow::Owned(v.to_string())));
        }
        Ok(())
    }
    fn visit_string<E: de::Error>(mut self, v: String) -> Result<(), E> {
        self.push(Scalar::Str(Cow::Owned(v)));
        Ok(())
    }
    fn visit_unit<E: de::Error>(mut self) -> Result<(), E> {
        self.push(Scalar::Null);
        Ok(())
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.visit_unit()
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let ValueSeed { table, node, out } = self;
        while seq.next_element_seed(ValueSeed { table, node, out: &mut *out })?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(mut self, map: A) -> Result<(), A::Error> {
        self.push(Scalar::Object);
        visit_object(self.table, self.node, self.out, map)
    }
}
