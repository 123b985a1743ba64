//! `open-at` of `wasi:filesystem`, linked in place of wasmtime-wasi's own: the same
//! permission checks and flags, but the file is opened with `O_NONBLOCK`, and anything that
//! is neither a regular file nor a directory (a FIFO, a device, a socket) is closed again and
//! refused with `unsupported`.
//!
//! Opening a FIFO for reading blocks in the kernel until a writer appears, and a device can
//! block its reads. wasmtime-wasi opens on a blocking thread, which the call's time limit
//! cannot interrupt: every such call would keep a host thread after the call has ended, and a
//! few hundred of them would starve every file tool and hang shutdown. Opened non-blocking,
//! the open returns at once; for a regular file or a directory the flag is then cleared, so
//! reads and writes behave as before. The check is made on the opened descriptor, so swapping
//! the path between a check and the open changes nothing.
//!
//! Like every filesystem call of a plugin, the open runs on the guest's own thread
//! ([`super::state::FS_ON_CURRENT_THREAD`]); opened non-blocking, it cannot wait there for a
//! writer or a device.

use std::os::fd::AsRawFd;

use cap_primitives::fs::{FollowSymlinks, OpenOptions};
use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::OpenMode;
use wasmtime_wasi::filesystem::{Descriptor, Dir, File};
use wasmtime_wasi::p2::bindings::filesystem::types::{DescriptorFlags, ErrorCode, OpenFlags, PathFlags};

use super::state::{CallState, FS_ON_CURRENT_THREAD};

/// The `wasi:filesystem` interface wasmtime-wasi links (a new wasmtime-wasi may change it;
/// the hostile suite's FIFO test fails if this no longer replaces the linked function).
const INTERFACE: &str = "wasi:filesystem/types@0.2.12";

/// Replaces `[method]descriptor.open-at` in a linker that already has WASI.
pub(super) fn replace_in(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut types = linker.instance(INTERFACE)?;
    types.func_wrap_async(
        "[method]descriptor.open-at",
        |mut store, (fd, path_flags, path, oflags, flags): (Resource<Descriptor>, PathFlags, String, OpenFlags, DescriptorFlags)| {
            Box::new(async move {
                let dir = match store.data_mut().table().get(&fd)? {
                    Descriptor::Dir(dir) => dir.clone(),
                    Descriptor::File(_) => return Ok((Err(ErrorCode::NotDirectory),)),
                };
                match open_at(dir, path_flags, path, oflags, flags).await {
                    Ok(opened) => Ok((Ok(store.data_mut().table().push(opened)?),)),
                    Err(code) => Ok((Err(code),)),
                }
            })
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// What the blocking open found.
enum Opened {
    Dir(std::fs::File),
    File(std::fs::File),
    NotDir,
    Special,
}

async fn open_at(
    dir: Dir,
    path_flags: PathFlags,
    path: String,
    oflags: OpenFlags,
    flags: DescriptorFlags,
) -> Result<Descriptor, ErrorCode> {
    let mut opts = OpenOptions::new();
    let mut open_mode = OpenMode::empty();
    let mut create = false;
    if oflags.contains(OpenFlags::CREATE) {
        if oflags.contains(OpenFlags::EXCLUSIVE) {
            opts.create_new(true);
        } else {
            opts.create(true);
        }
        create = true;
        opts.write(true);
        open_mode |= OpenMode::WRITE;
    }
    if oflags.contains(OpenFlags::TRUNCATE) {
        opts.truncate(true).write(true);
        open_mode |= OpenMode::WRITE;
    }
    if flags.contains(DescriptorFlags::WRITE) {
        opts.write(true);
        open_mode |= OpenMode::WRITE;
    }
    // Opened for reading unless only writing was asked: the permissions refuse reads later.
    if flags.contains(DescriptorFlags::READ) || !flags.contains(DescriptorFlags::WRITE) {
        opts.read(true);
        open_mode |= OpenMode::READ;
    }
    // The `_cap_fs_ext_` setters are cap-primitives' public form of these two options.
    opts._cap_fs_ext_follow(if path_flags.contains(PathFlags::SYMLINK_FOLLOW) { FollowSymlinks::Yes } else { FollowSymlinks::No });
    opts._cap_fs_ext_nonblock(true);
    let sync = DescriptorFlags::FILE_INTEGRITY_SYNC | DescriptorFlags::DATA_INTEGRITY_SYNC | DescriptorFlags::REQUESTED_WRITE_SYNC;
    if flags.intersects(sync) {
        return Err(ErrorCode::Unsupported);
    }
    let creates_in_dir = OpenFlags::CREATE | OpenFlags::EXCLUSIVE | OpenFlags::TRUNCATE;
    if oflags.contains(OpenFlags::DIRECTORY) && oflags.intersects(creates_in_dir) {
        return Err(ErrorCode::Invalid);
    }
    if dir.perms.write_not_permitted() && (create || open_mode.contains(OpenMode::WRITE)) {
        return Err(ErrorCode::NotPermitted);
    }

    let opened = (|| -> std::io::Result<Opened> {
        let file = cap_primitives::fs::open(&dir.dir, path.as_ref(), &opts)?;
        let kind = file.metadata()?.file_type();
        Ok(if kind.is_dir() {
            Opened::Dir(blocking_again(file)?)
        } else if oflags.contains(OpenFlags::DIRECTORY) {
            Opened::NotDir
        } else if kind.is_file() {
            Opened::File(blocking_again(file)?)
        } else {
            Opened::Special
        })
    })()?;
    Ok(match opened {
        Opened::Dir(file) => Descriptor::Dir(Dir::new(file, dir.perms, open_mode, FS_ON_CURRENT_THREAD)),
        Opened::File(file) => Descriptor::File(File::new(file, dir.perms, open_mode, FS_ON_CURRENT_THREAD)),
        Opened::NotDir => return Err(ErrorCode::NotDirectory),
        Opened::Special => return Err(ErrorCode::Unsupported),
    })
}

/// Clears `O_NONBLOCK` again, for a regular file or a directory.
fn blocking_again(file: std::fs::File) -> std::io::Result<std::fs::File> {
    let fd = file.as_raw_fd();
    // SAFETY: `fd` is the open descriptor `file` owns for the whole call.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(file)
}
