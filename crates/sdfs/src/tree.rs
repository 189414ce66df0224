//! A tree of blocks: the content of a file, a directory or the inode table. A node of height 0
//! is a data block; a node of height h > 0 is an indirect block of [`FANOUT`] pointers to nodes
//! of height h - 1. In memory a node is clean (a pointer to a block of the committed tree, or the
//! hole) or dirty (its contents, changed since the last sync). Changing a clean node makes it
//! dirty and retires its block, so the committed tree is never written over: copy on write.
//! Every walk is bounded by the height, which is at most [`MAX_HEIGHT`].

use crate::format::{BLOCK, FANOUT, MAX_HEIGHT, Ptr, capacity, span};
use crate::store::{Block, Store, zeroed};
use crate::{Corruption, Error};
use alloc::boxed::Box;
use alloc::vec::Vec;
use blockdev::BlockIo;

/// A node.
#[derive(Debug)]
pub enum Node {
    /// A block of the committed tree, or the hole.
    Clean(Ptr),
    /// A data block changed since the last sync.
    Leaf(Block),
    /// An indirect block changed since the last sync.
    Inner(Box<[Node]>),
}

impl Node {
    pub const HOLE: Node = Node::Clean(Ptr::HOLE);

    fn is_hole(&self) -> bool {
        matches!(self, Node::Clean(p) if p.is_hole())
    }
}

/// Decodes an indirect block into its children.
pub fn decode_inner(b: &[u8; BLOCK], blocks: u64) -> Result<Vec<Ptr>, Error> {
    (0..FANOUT).map(|i| Ptr::decode(b, i * 8, blocks)).collect()
}

/// A tree and its height.
#[derive(Debug)]
pub struct Tree {
    pub height: u8,
    pub root: Node,
}

impl Tree {
    pub fn new(height: u8, root: Ptr) -> Self {
        Tree {
            height,
            root: Node::Clean(root),
        }
    }

    /// Its root pointer, once flushed.
    pub fn root_ptr(&self) -> Ptr {
        match self.root {
            Node::Clean(p) => p,
            _ => Ptr::HOLE, // callers flush first
        }
    }

    /// Reads the leaf `idx` into `out`.
    pub fn read_leaf<D: BlockIo>(
        &self,
        store: &mut Store<D>,
        idx: u64,
        out: &mut [u8; BLOCK],
    ) -> Result<(), Error> {
        let mut node = &self.root;
        let mut h = self.height;
        let mut idx = idx;
        let mut ptr = loop {
            match node {
                Node::Leaf(b) => {
                    out.copy_from_slice(&b[..]);
                    return Ok(());
                }
                Node::Inner(ch) => {
                    let s = span(h - 1);
                    node = &ch[(idx / s) as usize];
                    idx %= s;
                    h -= 1;
                }
                Node::Clean(p) => break *p,
            }
        };
        while h > 0 && !ptr.is_hole() {
            store.read_cached(ptr, out)?;
            let s = span(h - 1);
            ptr = Ptr::decode(&out[..], (idx / s) as usize * 8, store.blocks)?;
            idx %= s;
            h -= 1;
        }
        store.read(ptr, out)
    }

    /// The leaf `idx`, made dirty with the path to it.
    pub fn leaf_mut<'a, D: BlockIo>(
        &'a mut self,
        store: &mut Store<D>,
        idx: u64,
    ) -> Result<&'a mut [u8; BLOCK], Error> {
        let mut node = &mut self.root;
        let mut h = self.height;
        let mut idx = idx;
        loop {
            make_dirty(store, node, h)?;
            match node {
                Node::Leaf(b) => return Ok(b),
                Node::Inner(ch) => {
                    let s = span(h - 1);
                    node = &mut ch[(idx / s) as usize];
                    idx %= s;
                    h -= 1;
                }
                Node::Clean(_) => unreachable!("made dirty"),
            }
        }
    }

    /// Grows the tree until it holds `size` bytes.
    pub fn grow<D: BlockIo>(&mut self, store: &mut Store<D>, size: u64) -> Result<(), Error> {
        while capacity(self.height) < size {
            if self.height >= MAX_HEIGHT {
                return Err(Error::FileTooLarge);
            }
            if !self.root.is_hole() {
                store.dirty_one()?;
                let mut ch: Vec<Node> = (0..FANOUT).map(|_| Node::HOLE).collect();
                ch[0] = core::mem::replace(&mut self.root, Node::HOLE);
                self.root = Node::Inner(ch.into_boxed_slice());
            }
            self.height += 1;
        }
        Ok(())
    }

    /// Writes `data` at byte `off` (the caller has grown the tree and checked the space).
    pub fn write<D: BlockIo>(
        &mut self,
        store: &mut Store<D>,
        off: u64,
        data: &[u8],
    ) -> Result<(), Error> {
        let mut done = 0usize;
        while done < data.len() {
            let at = off + done as u64;
            let idx = at / BLOCK as u64;
            let start = (at % BLOCK as u64) as usize;
            let n = (BLOCK - start).min(data.len() - done);
            let leaf = self.leaf_mut(store, idx)?;
            leaf[start..start + n].copy_from_slice(&data[done..done + n]);
            done += n;
        }
        Ok(())
    }

    /// Cuts the tree to `size` bytes, from `old` bytes: drops the leaves past it, zeroes the tail
    /// of the last and lowers the height. Retired blocks are noted in `store` only once all of it
    /// worked.
    pub fn truncate<D: BlockIo>(
        &mut self,
        store: &mut Store<D>,
        old: u64,
        size: u64,
    ) -> Result<(), Error> {
        if size >= old {
            return Ok(());
        }
        let keep = size.div_ceil(BLOCK as u64);
        let mut gone = Freed::default();
        prune(store, &mut self.root, self.height, keep, &mut gone)?;
        gone.apply(store);
        if !size.is_multiple_of(BLOCK as u64) {
            let leaf = self.leaf_mut(store, keep - 1)?;
            leaf[(size % BLOCK as u64) as usize..].fill(0);
        }
        while self.height > 0 && capacity(self.height - 1) >= size.max(1) {
            if !self.root.is_hole() {
                make_dirty(store, &mut self.root, self.height)?;
                let Node::Inner(ch) = &mut self.root else {
                    unreachable!("made dirty at height > 0")
                };
                let first = core::mem::replace(&mut ch[0], Node::HOLE);
                self.root = first;
                store.undirty(1);
            }
            self.height -= 1;
        }
        Ok(())
    }

    /// Frees the whole tree (its blocks retired once all of it was read).
    pub fn free<D: BlockIo>(&mut self, store: &mut Store<D>) -> Result<(), Error> {
        let mut gone = Freed::default();
        free_subtree(store, &self.root, self.height, &mut gone)?;
        gone.apply(store);
        self.root = Node::HOLE;
        self.height = 0;
        Ok(())
    }

    /// Writes every dirty node to a new block, from the leaves up: afterwards the tree is clean.
    pub fn flush<D: BlockIo>(&mut self, store: &mut Store<D>) -> Result<(), Error> {
        flush(store, &mut self.root)
    }

    /// Counts the dirty nodes (tests check the store's count with it).
    #[cfg(test)]
    pub fn dirty_nodes(&self) -> u64 {
        fn count(n: &Node) -> u64 {
            match n {
                Node::Clean(_) => 0,
                Node::Leaf(_) => 1,
                Node::Inner(ch) => 1 + ch.iter().map(count).sum::<u64>(),
            }
        }
        count(&self.root)
    }
}

/// Blocks and dirty nodes a change drops, applied to the store once the change has worked.
#[derive(Default)]
struct Freed {
    blocks: Vec<u32>,
    dirty: u64,
}

impl Freed {
    fn apply<D: BlockIo>(self, store: &mut Store<D>) {
        store.retired.extend(self.blocks);
        store.undirty(self.dirty);
    }
}

/// Makes `node` (of height `h`) dirty: loads a clean block (retiring it) or starts from zeros.
fn make_dirty<D: BlockIo>(store: &mut Store<D>, node: &mut Node, h: u8) -> Result<(), Error> {
    let Node::Clean(p) = *node else {
        return Ok(());
    };
    let data = store.load(p)?;
    let new = if h == 0 {
        Node::Leaf(data)
    } else if p.is_hole() {
        Node::Inner((0..FANOUT).map(|_| Node::HOLE).collect())
    } else {
        let ptrs = decode_inner(&data, store.blocks)?;
        Node::Inner(ptrs.into_iter().map(Node::Clean).collect())
    };
    store.dirty_one()?;
    if !p.is_hole() {
        store.retire(p.block);
    }
    *node = new;
    Ok(())
}

/// Drops the leaves from `keep` on under `node`.
fn prune<D: BlockIo>(
    store: &mut Store<D>,
    node: &mut Node,
    h: u8,
    keep: u64,
    gone: &mut Freed,
) -> Result<(), Error> {
    if keep >= span(h) {
        return Ok(());
    }
    if keep == 0 {
        free_subtree(store, node, h, gone)?;
        *node = Node::HOLE;
        return Ok(());
    }
    if node.is_hole() {
        return Ok(());
    }
    make_dirty(store, node, h)?;
    let Node::Inner(ch) = node else {
        unreachable!("h > 0 since 0 < keep < span(h)")
    };
    let s = span(h - 1);
    for c in ch.iter_mut().skip(keep.div_ceil(s) as usize) {
        free_subtree(store, c, h - 1, gone)?;
        *c = Node::HOLE;
    }
    if !keep.is_multiple_of(s) {
        prune(store, &mut ch[(keep / s) as usize], h - 1, keep % s, gone)?;
    }
    Ok(())
}

/// Notes every block and dirty node under `node` in `gone`.
fn free_subtree<D: BlockIo>(
    store: &mut Store<D>,
    node: &Node,
    h: u8,
    gone: &mut Freed,
) -> Result<(), Error> {
    match node {
        Node::Clean(p) if p.is_hole() => {}
        Node::Clean(p) => {
            if h > 0 {
                let data = store.load(*p)?;
                for c in decode_inner(&data, store.blocks)? {
                    free_subtree(store, &Node::Clean(c), h - 1, gone)?;
                }
            }
            gone.blocks.push(p.block);
        }
        Node::Leaf(_) => gone.dirty += 1,
        Node::Inner(ch) => {
            for c in ch.iter() {
                free_subtree(store, c, h - 1, gone)?;
            }
            gone.dirty += 1;
        }
    }
    Ok(())
}

fn flush<D: BlockIo>(store: &mut Store<D>, node: &mut Node) -> Result<(), Error> {
    let ptr = match node {
        Node::Clean(_) => return Ok(()),
        Node::Leaf(b) => store.write_new(b)?,
        Node::Inner(ch) => {
            let mut b = zeroed();
            for (i, c) in ch.iter_mut().enumerate() {
                flush(store, c)?;
                if let Node::Clean(p) = c {
                    p.encode(&mut b[..], i * 8);
                }
            }
            if ch.iter().all(Node::is_hole) {
                store.undirty(1);
                Ptr::HOLE
            } else {
                store.write_new(&b)?
            }
        }
    };
    *node = Node::Clean(ptr);
    Ok(())
}

/// What [`walk`] calls for every block.
pub type Each<'a, D> = dyn FnMut(&mut Store<D>, u32) -> Result<(), Error> + 'a;
/// What [`walk`] calls for every data block: its index and pointer.
pub type Leaf<'a, D> = dyn FnMut(&mut Store<D>, u64, Ptr) -> Result<(), Error> + 'a;

/// Checks a clean tree of `height` holding `size` bytes, calling `each(block, height, idx)`
/// for every block (an indirect block read and checked first) and `leaf(idx, ptr)` for each
/// data block. A leaf past `size` is corruption. Recursion depth is the height (at most
/// [`MAX_HEIGHT`], checked when the record was decoded).
pub fn walk<D: BlockIo>(
    store: &mut Store<D>,
    root: Ptr,
    height: u8,
    size: u64,
    each: &mut Each<'_, D>,
    leaf: &mut Leaf<'_, D>,
) -> Result<(), Error> {
    fn go<D: BlockIo>(
        store: &mut Store<D>,
        p: Ptr,
        h: u8,
        base: u64,
        leaves: u64,
        each: &mut Each<'_, D>,
        leaf: &mut Leaf<'_, D>,
    ) -> Result<(), Error> {
        if p.is_hole() {
            return Ok(());
        }
        if base >= leaves {
            return Err(Error::Corrupt(Corruption::PastEnd { block: p.block }));
        }
        each(store, p.block)?;
        if h == 0 {
            return leaf(store, base, p);
        }
        let data = store.load(p)?;
        let s = span(h - 1);
        for (i, c) in decode_inner(&data, store.blocks)?.into_iter().enumerate() {
            go(store, c, h - 1, base + i as u64 * s, leaves, each, leaf)?;
        }
        Ok(())
    }
    go(
        store,
        root,
        height,
        0,
        size.div_ceil(BLOCK as u64),
        each,
        leaf,
    )
}
