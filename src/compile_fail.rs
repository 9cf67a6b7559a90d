//! Lends the borrow checker must refuse. Each block is a `compile_fail` doctest with the error
//! code it must fail with: rustdoc checks the code on nightly, so a block that fails for another
//! reason (a typo) shows there; on stable it checks that the block does not compile. These pin
//! the lifetimes and auto traits of the grants, frames and ends: a change to a signature that
//! lets a lent slice outlive its lend, or a second lend coexist with the first, fails here.
//! Compiled only for doctests (`cargo test --doc`).

/// The blocking ends.
///
/// A slice of a WriteGrant used after the grant was committed:
/// ```compile_fail,E0505
/// let (mut tx, _rx) = mirror_ring::channel(4096).unwrap();
/// let mut g = tx.write_grant(4).unwrap();
/// let s: &mut [u8] = &mut g[..4];
/// g.commit(4).unwrap();
/// s[0] = 1;
/// ```
///
/// Two write grants at once:
/// ```compile_fail,E0499
/// let (mut tx, _rx) = mirror_ring::channel(4096).unwrap();
/// let a = tx.write_grant(4).unwrap();
/// let b = tx.write_grant(4).unwrap();
/// drop((a, b));
/// ```
///
/// A write grant and a copying write at once:
/// ```compile_fail,E0499
/// use std::io::Write;
/// let (mut tx, _rx) = mirror_ring::channel(4096).unwrap();
/// let a = tx.write_grant(4).unwrap();
/// tx.write_all(b"x").unwrap();
/// drop(a);
/// ```
///
/// A read grant's slice kept past its release:
/// ```compile_fail,E0505
/// let (_tx, mut rx) = mirror_ring::channel(4096).unwrap();
/// let g = rx.read_grant(1).unwrap();
/// let s: &[u8] = &g;
/// g.release(1).unwrap();
/// let _ = s[0];
/// ```
///
/// fill_buf's slice held across consume:
/// ```compile_fail,E0499
/// use std::io::BufRead;
/// let (_tx, mut rx) = mirror_ring::channel(4096).unwrap();
/// let s = rx.fill_buf().unwrap();
/// rx.consume(s.len());
/// let _ = s.len();
/// ```
///
/// fill_buf's slice held across into_framed:
/// ```compile_fail,E0505
/// use std::io::BufRead;
/// let (_tx, mut rx) = mirror_ring::channel(4096).unwrap();
/// let s = rx.fill_buf().unwrap();
/// let _f = rx.into_framed();
/// let _ = s.len();
/// ```
///
/// A frame held across the next receive:
/// ```compile_fail,E0499
/// let (_tx, rx) = mirror_ring::channel(4096).unwrap();
/// let mut rx = rx.into_framed();
/// let a = rx.try_recv().unwrap().unwrap();
/// let b = rx.try_recv().unwrap().unwrap();
/// drop((a, b));
/// ```
///
/// A frame's bytes kept after the frame is dropped:
/// ```compile_fail,E0505
/// let (_tx, rx) = mirror_ring::channel(4096).unwrap();
/// let mut rx = rx.into_framed();
/// let f = rx.try_recv().unwrap().unwrap();
/// let s: &[u8] = &f;
/// drop(f);
/// let _ = s[0];
/// ```
///
/// A frame held across into_inner:
/// ```compile_fail,E0505
/// let (_tx, rx) = mirror_ring::channel(4096).unwrap();
/// let mut rx = rx.into_framed();
/// let f = rx.try_recv().unwrap().unwrap();
/// let _raw = rx.into_inner();
/// drop(f);
/// ```
///
/// A recv_batch slice escaping the closure:
/// ```compile_fail,E0521
/// let (_tx, rx) = mirror_ring::channel(4096).unwrap();
/// let mut rx = rx.into_framed();
/// let mut keep: Vec<&[u8]> = Vec::new();
/// rx.try_recv_batch(|f| keep.push(f)).unwrap();
/// ```
///
/// A frame grant's slice kept after commit:
/// ```compile_fail,E0505
/// let (tx, _rx) = mirror_ring::channel(4096).unwrap();
/// let mut tx = tx.into_framed();
/// let mut g = tx.reserve(8).unwrap();
/// let s: &mut [u8] = &mut g;
/// g.commit().unwrap();
/// s[0] = 1;
/// ```
///
/// A frame grant held across send:
/// ```compile_fail,E0499
/// let (tx, _rx) = mirror_ring::channel(4096).unwrap();
/// let mut tx = tx.into_framed();
/// let g = tx.reserve(8).unwrap();
/// tx.send(b"x").unwrap();
/// drop(g);
/// ```
///
/// A read grant sent to another thread (it is !Send):
/// ```compile_fail,E0277
/// let (_tx, mut rx) = mirror_ring::channel(4096).unwrap();
/// let g = rx.read_grant(1).unwrap();
/// std::thread::scope(|s| { s.spawn(move || drop(g)); });
/// ```
///
/// A producer shared between threads (it is !Sync):
/// ```compile_fail,E0277
/// let (tx, _rx) = mirror_ring::channel(4096).unwrap();
/// std::thread::scope(|s| { s.spawn(|| tx.free()); s.spawn(|| tx.free()); });
/// ```
/// Sanity (must compile): the same shapes, used correctly.
/// ```
/// use std::io::BufRead;
/// let (mut tx, mut rx) = mirror_ring::channel(4096).unwrap();
/// let mut g = tx.write_grant(4).unwrap();
/// g[..4].copy_from_slice(b"abcd");
/// g.commit(4).unwrap();
/// let n = rx.fill_buf().unwrap().len();
/// rx.consume(n);
/// let (mut tx, mut rx) = (tx.into_framed(), rx.into_framed());
/// tx.send(b"x").unwrap();
/// let mut keep: Vec<Vec<u8>> = Vec::new();
/// rx.try_recv_batch(|f| keep.push(f.to_vec())).unwrap();
/// assert_eq!(keep, [b"x".to_vec()]);
/// ```
pub struct Blocking;

#[cfg(feature = "tokio")]
/// The async ends (feature `tokio`).
///
/// The async consumer's poll_fill_buf slice held across consume:
/// ```compile_fail,E0499
/// use std::pin::Pin;
/// use tokio::io::AsyncBufRead;
/// fn f(rx: &mut mirror_ring::AsyncConsumer, cx: &mut std::task::Context<'_>) {
///     if let std::task::Poll::Ready(Ok(s)) = Pin::new(&mut *rx).poll_fill_buf(cx) {
///         Pin::new(&mut *rx).consume(s.len());
///         let _ = s.len();
///     }
/// }
/// ```
///
/// An async frame held across get_mut:
/// ```compile_fail,E0499
/// async fn f(rx: &mut mirror_ring::AsyncFramedConsumer) {
///     let fr = rx.recv().await.unwrap().unwrap();
///     let _ = rx.get_mut().try_recv();
///     drop(fr);
/// }
/// ```
///
/// An async frame grant held across into_inner:
/// ```compile_fail,E0505
/// async fn f(mut tx: mirror_ring::AsyncFramedProducer) {
///     let g = tx.reserve(8).await.unwrap();
///     let _p = tx.into_inner();
///     drop(g);
/// }
/// ```
///
/// A slice of the write grant from a get_mut of an async producer, held across a poll_write:
/// ```compile_fail,E0499
/// use std::pin::Pin;
/// use tokio::io::AsyncWrite;
/// fn f(tx: &mut mirror_ring::AsyncProducer, cx: &mut std::task::Context<'_>) {
///     let g = tx.get_mut().write_grant(1).unwrap();
///     let _ = Pin::new(&mut *tx).poll_write(cx, b"x");
///     drop(g);
/// }
/// ```
pub struct Async;
