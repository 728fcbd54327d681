//! Reading the fuzz input.


/// A cursor over the fuzz input; reads past the end give zeros / empty.
pub struct Input<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Input { data, pos: 0 }
    }
    pub fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }
    pub fn u8(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    /// Up to `n` bytes.
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let start = self.pos.min(self.data.len());
        let end = start.saturating_add(n).min(self.data.len());
        self.pos = end.max(self.pos);
        &self.data[start..end]
    }
    /// A length-prefixed (u16) byte string.
    pub fn data(&mut self) -> &'a [u8] {
        let n = self.u16() as usize;
        self.take(n)
    }
    pub fn rest(&mut self) -> &'a [u8] {
        self.take(usize::MAX)
    }
    pub fn pick<T: Clone>(&mut self, from: &[T]) -> T {
        from[self.u8() as usize % from.len()].clone()
    }
}
