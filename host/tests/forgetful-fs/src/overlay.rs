//! The unsynced writes of one file: byte ranges laid over its backing file.

use std::collections::BTreeMap;

/// Written-but-not-synced bytes of one file, as non-overlapping extents
/// keyed by file offset. Exact byte ranges rather than pages, so nothing
/// needs to be read from the backing file to accept a write, and the dirty
/// byte count means what it says.
#[derive(Debug, Default)]
pub(crate) struct Overlay {
    extents: BTreeMap<u64, Vec<u8>>,
    bytes: u64,
}

impl Overlay {
    /// Records `data` at `offset`, replacing whatever was cached there.
    pub(crate) fn write(&mut self, offset: u64, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        self.cut(offset, offset + data.len() as u64);
        self.bytes += data.len() as u64;
        self.extents.insert(offset, data.to_vec());
    }

    /// Lays the cached bytes of `[offset, offset + buf.len())` over `buf`,
    /// which holds what the backing file has there.
    pub(crate) fn read_into(&self, offset: u64, buf: &mut [u8]) {
        let end = offset + buf.len() as u64;
        for (start, data) in self.overlapping(offset, end) {
            let from = start.max(offset);
            let to = (start + data.len() as u64).min(end);
            buf[(from - offset) as usize..(to - offset) as usize]
                .copy_from_slice(&data[(from - start) as usize..(to - start) as usize]);
        }
    }

    /// Forgets everything cached at or past `size`, as a truncation must:
    /// growing the file again later has to read zeros there.
    pub(crate) fn truncate(&mut self, size: u64) {
        self.cut(size, u64::MAX);
    }

    /// One past the last cached byte (0 when nothing is cached): the file is
    /// at least this long while the cache holds.
    pub(crate) fn end(&self) -> u64 {
        self.extents
            .last_key_value()
            .map_or(0, |(start, data)| start + data.len() as u64)
    }

    /// How many bytes are cached.
    pub(crate) fn dirty_bytes(&self) -> u64 {
        self.bytes
    }

    /// The cached extents in offset order, to be written to the backing file.
    pub(crate) fn extents(&self) -> impl Iterator<Item = (u64, &[u8])> {
        self.extents
            .iter()
            .map(|(start, data)| (*start, data.as_slice()))
    }

    /// The extents that share a byte with `[start, end)`, last first.
    fn overlapping(&self, start: u64, end: u64) -> impl Iterator<Item = (u64, &Vec<u8>)> {
        // Extents never overlap, so their ends grow with their starts: once
        // one ends at or before `start`, all earlier ones do too.
        self.extents
            .range(..end)
            .rev()
            .take_while(move |(s, data)| **s + data.len() as u64 > start)
            .map(|(s, data)| (*s, data))
    }

    /// Removes `[start, end)` from the cache, keeping what lies either side.
    fn cut(&mut self, start: u64, end: u64) {
        let hit: Vec<u64> = self.overlapping(start, end).map(|(s, _)| s).collect();
        for s in hit {
            let mut data = self.extents.remove(&s).expect("listed as overlapping");
            self.bytes -= data.len() as u64;
            if s + data.len() as u64 > end {
                let tail = data.split_off((end - s) as usize);
                self.bytes += tail.len() as u64;
                self.extents.insert(end, tail);
            }
            if s < start {
                data.truncate((start - s) as usize);
                self.bytes += data.len() as u64;
                self.extents.insert(s, data);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Overlay;

    /// A reproducible stream of numbers, so a failure can be replayed.
    struct XorShift(u64);

    impl XorShift {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    #[test]
    fn matches_a_plain_buffer_under_random_writes_and_truncations() {
        const LEN: u64 = 300;
        for seed in 1..200 {
            let mut rng = XorShift(seed);
            let mut overlay = Overlay::default();
            // What the cache must show, and which bytes it must hold.
            let mut model = vec![0u8; LEN as usize];
            let mut dirty = vec![false; LEN as usize];
            for step in 0..40u8 {
                if rng.below(8) == 0 {
                    let size = rng.below(LEN);
                    overlay.truncate(size);
                    model[size as usize..].fill(0);
                    dirty[size as usize..].fill(false);
                } else {
                    let offset = rng.below(LEN - 1);
                    let len = 1 + rng.below((LEN - offset).min(40));
                    let data = vec![step + 1; len as usize];
                    overlay.write(offset, &data);
                    let range = offset as usize..(offset + len) as usize;
                    model[range.clone()].copy_from_slice(&data);
                    dirty[range].fill(true);
                }
                let mut seen = vec![0u8; LEN as usize];
                overlay.read_into(0, &mut seen);
                assert_eq!(seen, model, "seed {seed}, step {step}");
                let window = rng.below(LEN);
                let mut part = vec![0u8; (LEN - window).min(17) as usize];
                overlay.read_into(window, &mut part);
                assert_eq!(part, model[window as usize..][..part.len()]);
                let count = dirty.iter().filter(|d| **d).count() as u64;
                assert_eq!(overlay.dirty_bytes(), count, "seed {seed}, step {step}");
                let end = dirty.iter().rposition(|d| *d).map_or(0, |i| i as u64 + 1);
                assert_eq!(overlay.end(), end, "seed {seed}, step {step}");
                let listed: u64 = overlay.extents().map(|(_, d)| d.len() as u64).sum();
                assert_eq!(listed, count);
            }
        }
    }
}
