//! `index_metadata.pickle`: the map from chroma's record ids to hnswlib labels.
//!
//! Chroma 1.x writes it with the `serde-pickle` crate (protocol 3): a dict whose `id_to_label`
//! maps id strings to ints, beside `label_to_id` (the same map turned round) and a few scalars.
//! serde-pickle reads a whole pickle into a value tree before a visitor sees any of it, about
//! 150 bytes an id for the two maps, so this module runs the few opcodes such a pickle uses
//! itself: `id_to_label`'s ids are interned as their `SETITEMS` arrive and every other
//! container's items are dropped, which holds one batch of 1000 pairs at a time. Python-era
//! pickles (a `PersistentData` object, memo references) are refused as not chroma's id map; such
//! stores are too old for this plugin anyway.

use std::io::{BufReader, Read};
use std::path::Path;

use ragged_plugin_api::PluginError;

use crate::ids::Ids;

/// The file name inside a vector segment directory.
pub const FILE: &str = "index_metadata.pickle";

/// Reads `id_to_label` as (id number, label) pairs, each id interned in `ids`. No pairs means
/// chroma treats the segment as never persisted.
pub fn read_id_to_label(path: &Path, ids: &mut Ids) -> Result<Vec<(u32, u64)>, PluginError> {
    let file = std::fs::File::open(path).map_err(|e| PluginError::io(path, &e))?;
    parse_id_to_label(BufReader::new(file), path, ids)
}

fn parse_id_to_label(pickle: impl Read, path: &Path, ids: &mut Ids) -> Result<Vec<(u32, u64)>, PluginError> {
    let corrupt = |problem: String| PluginError::corrupt(format!("{}: {problem}", path.display()));
    let mut machine = Machine {
        input: pickle,
        offset: 0,
        stack: Vec::new(),
        ids,
        id_to_label: None,
        attached: false,
    };
    let pairs = machine
        .run()
        .map_err(|e| corrupt(format!("unreadable pickle or not chroma's id map ({e})")))?;
    pairs
        .into_iter()
        .map(|(number, label)| match u64::try_from(label) {
            Ok(label) if label > 0 => Ok((number, label)),
            _ => Err(corrupt(format!(
                "label of '{}' is {label}, expected a positive int",
                machine.ids.get(number)
            ))),
        })
        .collect()
}

/// The opcodes of the pickles chroma 1.x writes (`serde_pickle`'s protocol 3) and of plain
/// Python containers and scalars.
mod op {
    pub const PROTO: u8 = 0x80;
    pub const FRAME: u8 = 0x95;
    pub const STOP: u8 = b'.';
    pub const MARK: u8 = b'(';
    pub const POP: u8 = b'0';
    pub const POP_MARK: u8 = b'1';
    pub const NONE: u8 = b'N';
    pub const NEWTRUE: u8 = 0x88;
    pub const NEWFALSE: u8 = 0x89;
    pub const BININT: u8 = b'J';
    pub const BININT1: u8 = b'K';
    pub const BININT2: u8 = b'M';
    pub const LONG1: u8 = 0x8a;
    pub const BINFLOAT: u8 = b'G';
    pub const BINUNICODE: u8 = b'X';
    pub const SHORT_BINUNICODE: u8 = 0x8c;
    pub const BINUNICODE8: u8 = 0x8d;
    pub const BINBYTES: u8 = b'B';
    pub const SHORT_BINBYTES: u8 = b'C';
    pub const BINBYTES8: u8 = 0x8e;
    pub const EMPTY_DICT: u8 = b'}';
    pub const SETITEM: u8 = b's';
    pub const SETITEMS: u8 = b'u';
    pub const EMPTY_LIST: u8 = b']';
    pub const APPEND: u8 = b'a';
    pub const APPENDS: u8 = b'e';
    pub const EMPTY_TUPLE: u8 = b')';
    pub const TUPLE: u8 = b't';
    pub const TUPLE1: u8 = 0x85;
    pub const TUPLE2: u8 = 0x86;
    pub const TUPLE3: u8 = 0x87;
    pub const BINPUT: u8 = b'q';
    pub const LONG_BINPUT: u8 = b'r';
    pub const MEMOIZE: u8 = 0x94;
    pub const GLOBAL: u8 = b'c';
    pub const STACK_GLOBAL: u8 = 0x93;
}

/// What the machine keeps of a stack item.
#[derive(Debug, PartialEq)]
enum Item {
    Mark,
    Str(String),
    Int(i64),
    Dict(Dict),
    List,
    /// None, a bool, a float, bytes or a tuple: nothing chroma's id map is made of.
    Other,
}

/// The dicts of chroma's pickle; only `id_to_label`'s items are kept.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Dict {
    Top,
    IdToLabel,
    Other,
}

struct Machine<'a, R> {
    input: R,
    /// Bytes read so far, for messages.
    offset: u64,
    stack: Vec<Item>,
    ids: &'a mut Ids,
    /// `id_to_label`'s pairs, from the moment its dict is pushed (its items arrive before the
    /// top level holds it).
    id_to_label: Option<Vec<(u32, i64)>>,
    /// Whether the top level holds `id_to_label`.
    attached: bool,
}

impl<R: Read> Machine<'_, R> {
    fn run(&mut self) -> Result<Vec<(u32, i64)>, String> {
        loop {
            let at = self.offset;
            let opcode = self.byte().map_err(|e| format!("{e} (no STOP opcode)"))?;
            if opcode == op::STOP {
                break;
            }
            self.step(opcode).map_err(|e| format!("at byte {at}: {e}"))?;
        }
        match (self.stack.as_slice(), self.id_to_label.take()) {
            ([Item::Dict(Dict::Top)], Some(pairs)) if self.attached => Ok(pairs),
            ([Item::Dict(Dict::Top)], _) => Err("missing field `id_to_label`".into()),
            _ => Err("the pickle is not one dict".into()),
        }
    }

    fn step(&mut self, opcode: u8) -> Result<(), String> {
        match opcode {
            op::PROTO => {
                let version = self.byte()?;
                if version > 5 {
                    return Err(format!("unknown pickle protocol {version}"));
                }
            }
            op::FRAME => {
                self.array::<8>()?;
            }
            op::MARK => self.stack.push(Item::Mark),
            op::POP => {
                self.pop()?;
            }
            op::POP_MARK => {
                self.after_mark()?;
            }
            op::NONE | op::NEWTRUE | op::NEWFALSE => self.stack.push(Item::Other),
            op::BININT | op::BININT1 | op::BININT2 | op::LONG1 => {
                let int = match opcode {
                    op::BININT => i32::from_le_bytes(self.array()?).into(),
                    op::BININT1 => self.byte()?.into(),
                    op::BININT2 => u16::from_le_bytes(self.array()?).into(),
                    _ => self.long()?,
                };
                self.stack.push(Item::Int(int));
            }
            op::BINFLOAT => {
                self.array::<8>()?;
                self.stack.push(Item::Other);
            }
            op::SHORT_BINUNICODE | op::BINUNICODE | op::BINUNICODE8 => {
                let len = self.length(opcode)?;
                self.string(len)?;
            }
            op::SHORT_BINBYTES | op::BINBYTES | op::BINBYTES8 => {
                let len = self.length(opcode)?;
                self.skip(len)?;
            }
            op::EMPTY_DICT => {
                let dict = self.new_dict();
                if dict == Dict::IdToLabel {
                    if self.id_to_label.is_some() {
                        return Err("two `id_to_label` maps".into());
                    }
                    self.id_to_label = Some(Vec::new());
                }
                self.stack.push(Item::Dict(dict));
            }
            op::SETITEM => {
                let value = self.pop()?;
                let key = self.pop()?;
                self.set_items(vec![key, value])?;
            }
            op::SETITEMS => {
                let items = self.after_mark()?;
                self.set_items(items)?;
            }
            op::EMPTY_LIST => self.stack.push(Item::List),
            op::APPEND => {
                self.pop()?;
                self.expect_list()?;
            }
            op::APPENDS => {
                self.after_mark()?;
                self.expect_list()?;
            }
            op::EMPTY_TUPLE => self.stack.push(Item::Other),
            op::TUPLE => {
                self.after_mark()?;
                self.stack.push(Item::Other);
            }
            op::TUPLE1 | op::TUPLE2 | op::TUPLE3 => {
                for _ in op::TUPLE1..=opcode {
                    self.pop()?;
                }
                self.stack.push(Item::Other);
            }
            // Nothing here reads the memo back: storing into it changes nothing.
            op::BINPUT => {
                self.byte()?;
            }
            op::LONG_BINPUT => {
                self.array::<4>()?;
            }
            op::MEMOIZE => {}
            op::GLOBAL | op::STACK_GLOBAL => {
                return Err("a pickled Python object (chromadb 0.x's PersistentData?)".into());
            }
            _ => return Err(format!("opcode 0x{opcode:02x} is not one of chroma's pickles")),
        }
        Ok(())
    }

    /// The role of a dict pushed now: the first is the top level; one pushed as the value of the
    /// top level's key `id_to_label` is the id map.
    fn new_dict(&self) -> Dict {
        let pending = match self.stack.as_slice() {
            [] => return Dict::Top,
            [Item::Dict(Dict::Top), Item::Mark, pending @ ..] | [Item::Dict(Dict::Top), pending @ ..] => pending,
            _ => return Dict::Other,
        };
        // The key is checked first: the scan for a mark is the only step that is not constant.
        match pending.last() {
            Some(Item::Str(key))
                if key == "id_to_label" && pending.len() % 2 == 1 && !pending.contains(&Item::Mark) =>
            {
                Dict::IdToLabel
            }
            _ => Dict::Other,
        }
    }

    /// Adds key, value, key, value... to the dict under them.
    fn set_items(&mut self, items: Vec<Item>) -> Result<(), String> {
        let dict = match self.stack.last() {
            Some(Item::Dict(dict)) => *dict,
            _ => return Err("SETITEM(S) with no dict under the items".into()),
        };
        if items.len() % 2 == 1 {
            return Err("SETITEMS with a key and no value".into());
        }
        let mut items = items.into_iter();
        while let (Some(key), Some(value)) = (items.next(), items.next()) {
            match (dict, key, value) {
                (Dict::Top, Item::Str(key), Item::Dict(Dict::IdToLabel)) if key == "id_to_label" => {
                    self.attached = true;
                }
                (Dict::Top, Item::Str(key), _) if key == "id_to_label" => {
                    return Err("`id_to_label` is not a dict".into());
                }
                (Dict::IdToLabel, Item::Str(id), Item::Int(label)) => {
                    let number = self.ids.insert(&id);
                    self.id_to_label.get_or_insert_with(Vec::new).push((number, label));
                }
                (Dict::IdToLabel, Item::Str(id), _) => return Err(format!("the label of '{id}' is not an int")),
                (Dict::IdToLabel, _, _) => return Err("an id in `id_to_label` is not a string".into()),
                _ => {}
            }
        }
        Ok(())
    }

    fn pop(&mut self) -> Result<Item, String> {
        match self.stack.pop() {
            Some(Item::Mark) | None => Err("an opcode needs more items than the stack holds".into()),
            Some(item) => Ok(item),
        }
    }

    /// Takes the items after the topmost mark, and the mark.
    fn after_mark(&mut self) -> Result<Vec<Item>, String> {
        let mark = self
            .stack
            .iter()
            .rposition(|item| *item == Item::Mark)
            .ok_or("no MARK before an opcode that needs one")?;
        let items = self.stack.split_off(mark + 1);
        self.stack.pop();
        Ok(items)
    }

    fn expect_list(&self) -> Result<(), String> {
        match self.stack.last() {
            Some(Item::List) => Ok(()),
            _ => Err("APPEND(S) with no list under the items".into()),
        }
    }

    fn byte(&mut self) -> Result<u8, String> {
        Ok(self.array::<1>()?[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut bytes = [0; N];
        self.input.read_exact(&mut bytes).map_err(|e| self.read_error(&e))?;
        self.offset += N as u64;
        Ok(bytes)
    }

    /// The length argument of a string or bytes opcode: 1, 4 or 8 bytes.
    fn length(&mut self, opcode: u8) -> Result<u64, String> {
        Ok(match opcode {
            op::SHORT_BINUNICODE | op::SHORT_BINBYTES => self.byte()?.into(),
            op::BINUNICODE | op::BINBYTES => u32::from_le_bytes(self.array()?).into(),
            _ => u64::from_le_bytes(self.array()?),
        })
    }

    /// LONG1: a little-endian two's complement int of up to 8 bytes here.
    fn long(&mut self) -> Result<i64, String> {
        let len = usize::from(self.byte()?);
        if len > 8 {
            return Err(format!("an int of {len} bytes"));
        }
        let mut bytes = [0; 8];
        self.input
            .read_exact(&mut bytes[..len])
            .map_err(|e| self.read_error(&e))?;
        self.offset += len as u64;
        let negative = len > 0 && bytes[len - 1] & 0x80 != 0;
        if negative {
            bytes[len..].fill(0xff);
        }
        Ok(i64::from_le_bytes(bytes))
    }

    /// A UTF-8 string of `len` bytes. The length is only trusted as far as the file goes.
    fn string(&mut self, len: u64) -> Result<(), String> {
        let mut bytes = Vec::new();
        (&mut self.input)
            .take(len)
            .read_to_end(&mut bytes)
            .map_err(|e| self.read_error(&e))?;
        if bytes.len() as u64 != len {
            return Err(format!(
                "a string of {len} bytes, cut short at byte {}",
                self.offset + bytes.len() as u64
            ));
        }
        self.offset += len;
        let text = String::from_utf8(bytes).map_err(|_| "a string that is not UTF-8".to_owned())?;
        self.stack.push(Item::Str(text));
        Ok(())
    }

    fn skip(&mut self, len: u64) -> Result<(), String> {
        let skipped =
            std::io::copy(&mut (&mut self.input).take(len), &mut std::io::sink()).map_err(|e| self.read_error(&e))?;
        if skipped != len {
            return Err(format!("bytes of {len}, cut short at byte {}", self.offset + skipped));
        }
        self.offset += len;
        self.stack.push(Item::Other);
        Ok(())
    }

    fn read_error(&self, error: &std::io::Error) -> String {
        match error.kind() {
            std::io::ErrorKind::UnexpectedEof => format!("the file ends at byte {}", self.offset),
            _ => format!("read failed at byte {}: {error}", self.offset),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use serde_pickle::{HashableValue, Value};

    use super::*;

    /// A pickle shaped like chroma's (serde-pickle, protocol 3).
    pub(crate) fn chroma_pickle(ids: &[(&str, i64)]) -> Vec<u8> {
        let mut id_to_label = BTreeMap::new();
        let mut label_to_id = BTreeMap::new();
        for (id, label) in ids {
            id_to_label.insert(HashableValue::String((*id).to_owned()), Value::I64(*label));
            label_to_id.insert(HashableValue::I64(*label), Value::String((*id).to_owned()));
        }
        let mut dict = BTreeMap::new();
        dict.insert(HashableValue::String("dimensionality".into()), Value::None);
        dict.insert(
            HashableValue::String("total_elements_added".into()),
            Value::I64(ids.len() as i64),
        );
        dict.insert(HashableValue::String("id_to_label".into()), Value::Dict(id_to_label));
        dict.insert(HashableValue::String("label_to_id".into()), Value::Dict(label_to_id));
        serde_pickle::value_to_vec(&Value::Dict(dict), serde_pickle::SerOptions::new()).expect("pickles")
    }

    fn read(bytes: &[u8]) -> Result<Vec<(String, u64)>, PluginError> {
        let mut ids = Ids::default();
        let mut pairs: Vec<(String, u64)> = parse_id_to_label(bytes, Path::new("x.pickle"), &mut ids)?
            .into_iter()
            .map(|(number, label)| (ids.get(number).to_owned(), label))
            .collect();
        pairs.sort();
        Ok(pairs)
    }

    #[test]
    fn reads_chromas_id_map() {
        let bytes = chroma_pickle(&[("a", 1), ("b", 2)]);
        assert_eq!(
            read(&bytes).expect("parses"),
            [("a".to_owned(), 1), ("b".to_owned(), 2)]
        );
    }

    #[test]
    fn reads_a_protocol_5_pickle_of_python() {
        // pickle.dumps({"dimensionality": 384, "id_to_label": {"a": 1, "été": 2**40, "c": 70000},
        //     "total": 1.5, "flags": [True, None, (2, 3), b"xy"]}, protocol=5): frames, memo
        // entries, short strings, LONG1, a float, a tuple and bytes.
        let hex = "80059574000000000000007d94288c0e64696d656e73696f6e616c697479944d80018c0b69645f746f5f6c6162\
                   656c947d94288c0161944b018c05c3a974c3a9948a060000000000018c0163944a70110100758c05746f74616c\
                   94473ff80000000000008c05666c616773945d9428884e4b024b038694430278799465752e";
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
            .collect();
        assert_eq!(
            read(&bytes).expect("parses"),
            [
                ("a".to_owned(), 1),
                ("c".to_owned(), 70000),
                ("été".to_owned(), 1 << 40)
            ]
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Whatever serde-pickle (the writer chroma uses) makes of an id map, batches of 1000 and
        /// labels past 2^31 included, reads back as the same pairs.
        #[test]
        fn reads_what_serde_pickle_writes(
            map in proptest::collection::btree_map("[a-z0-9é-]{0,40}", 1i64..i64::MAX, 0..2500)
        ) {
            let pairs: Vec<(&str, i64)> = map.iter().map(|(id, label)| (id.as_str(), *label)).collect();
            let expected: Vec<(String, u64)> = map.iter().map(|(id, label)| (id.clone(), *label as u64)).collect();
            proptest::prop_assert_eq!(read(&chroma_pickle(&pairs)).expect("parses"), expected);
        }
    }

    #[test]
    fn damaged_pickles_are_corrupt_by_name() {
        let bytes = chroma_pickle(&[("a", 1)]);
        let error = parse_id_to_label(
            &bytes[..bytes.len() / 2],
            Path::new("seg/index_metadata.pickle"),
            &mut Ids::default(),
        )
        .expect_err("truncated");
        assert!(
            error
                .message
                .starts_with("seg/index_metadata.pickle: unreadable pickle"),
            "{error}"
        );
        let pickle = |value| serde_pickle::value_to_vec(&value, serde_pickle::SerOptions::new()).expect("pickles");
        let error = read(&pickle(Value::List(vec![]))).expect_err("list");
        assert!(error.message.contains("not chroma's id map"), "{error}");
        let error = read(&pickle(Value::Dict(BTreeMap::new()))).expect_err("no id_to_label");
        assert!(error.message.contains("missing field `id_to_label`"), "{error}");
        let error = read(&chroma_pickle(&[("a", 0)])).expect_err("label 0");
        assert!(error.message.contains("label of 'a' is 0"), "{error}");
        let not_a_dict = Value::Dict(BTreeMap::from([(
            HashableValue::String("id_to_label".into()),
            Value::List(vec![]),
        )]));
        let error = read(&pickle(not_a_dict)).expect_err("a list");
        assert!(error.message.contains("`id_to_label` is not a dict"), "{error}");
        let string_label = Value::Dict(BTreeMap::from([(
            HashableValue::String("id_to_label".into()),
            Value::Dict(BTreeMap::from([(
                HashableValue::String("a".into()),
                Value::String("1".into()),
            )])),
        )]));
        let error = read(&pickle(string_label)).expect_err("a string label");
        assert!(error.message.contains("the label of 'a' is not an int"), "{error}");
        // A Python object, as chromadb 0.x pickled its PersistentData.
        let error = read(b"\x80\x04ccopy_reg\n_reconstructor\n.").expect_err("an object");
        assert!(error.message.contains("a pickled Python object"), "{error}");
        let error = read(b"\x80\x03}u.").expect_err("no mark");
        assert!(error.message.contains("at byte 3: no MARK"), "{error}");
    }
}
