//! One blob's way to the destination: mount from a repository that has it, skip it when the
//! destination has it whole, else stream it from the source (restarted on failure, hashed
//! here once the destination refused its bytes).

use super::*;
use crate::error::Operation;

/// The repositories of the destination registry to try mounting from, in order.
pub(super) fn mount_sources(
    src: &dyn ImageStore,
    dst: &dyn ImageStore,
    extra: &[String],
) -> Vec<String> {
    let StoreLocation::Registry {
        registry: dst_registry,
        repository: dst_repo,
    } = dst.location()
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let StoreLocation::Registry {
        registry,
        repository,
    } = src.location()
    {
        if registry == dst_registry && repository != dst_repo {
            out.push(repository);
        }
    }
    for r in extra {
        if *r != dst_repo && !out.contains(r) {
            out.push(r.clone());
        }
    }
    out
}

/// A blob the destination lacks once the checks are done: to be streamed, in its `blob` span.
pub(super) struct Missing {
    desc: Descriptor,
    span: tracing::Span,
}

/// Places one blob at the destination without streaming it, in a `blob` span (digest, size,
/// outcome): mounted from a repository that has it, or skipped when the destination has it
/// whole. `None` when that placed it; else the blob is [`Missing`] and goes to [`upload`].
pub(super) async fn check_blob(
    dst: &dyn ImageStore,
    desc: &Descriptor,
    mount_sources: &[String],
    options: &CopyOptions,
    counters: &Counters,
) -> Result<Option<Missing>> {
    let span = tracing::debug_span!(
        "blob",
        digest = %desc.digest,
        size = desc.size,
        outcome = Empty,
        error = Empty
    );
    let work = place_without_upload(dst, desc, mount_sources, options, counters);
    let checked =
        crate::telemetry::traced(span.clone(), work, |span, placed: &Option<BlobAction>| {
            if let Some(action) = placed {
                span.record("outcome", outcome(*action));
            }
        });
    Ok(match checked.await? {
        Some(_) => None,
        None => Some(Missing {
            desc: desc.clone(),
            span,
        }),
    })
}

/// Streams a [`Missing`] blob from the source, in its span (restarted on failure).
pub(super) async fn upload(
    src: &dyn ImageStore,
    dst: &dyn ImageStore,
    missing: &Missing,
    options: &CopyOptions,
    counters: &Counters,
) -> Result<()> {
    let work = stream_blob(src, dst, &missing.desc, options, counters);
    crate::telemetry::traced(missing.span.clone(), work, |span, _: &()| {
        span.record("outcome", outcome(BlobAction::Uploaded));
    })
    .await
}

fn outcome(action: BlobAction) -> &'static str {
    match action {
        BlobAction::Skipped => "skipped",
        BlobAction::Mounted => "mounted",
        BlobAction::Uploaded => "uploaded",
    }
}

fn placed(options: &CopyOptions, desc: &Descriptor, action: BlobAction) -> Option<BlobAction> {
    emit(
        options,
        CopyEvent::BlobDone {
            digest: desc.digest.clone(),
            action,
            size: desc.size,
        },
    );
    Some(action)
}

async fn place_without_upload(
    dst: &dyn ImageStore,
    desc: &Descriptor,
    mount_sources: &[String],
    options: &CopyOptions,
    counters: &Counters,
) -> Result<Option<BlobAction>> {
    let digest = &desc.digest;
    // With a mount source on the destination's registry, mount first: a registry answers a
    // mount of a blob it already has with 201 too, so this costs one round trip either way.
    if let Some(from) = mount_sources.first() {
        if dst.mount_blob(digest, from).await? == MountOutcome::Mounted {
            counters.mounted.fetch_add(1, Ordering::Relaxed);
            return Ok(placed(options, desc, BlobAction::Mounted));
        }
    }
    if dst.has_blob(digest, Some(desc.size)).await? {
        counters.skipped.fetch_add(1, Ordering::Relaxed);
        return Ok(placed(options, desc, BlobAction::Skipped));
    }
    for from in mount_sources.iter().skip(1) {
        if dst.mount_blob(digest, from).await? == MountOutcome::Mounted {
            counters.mounted.fetch_add(1, Ordering::Relaxed);
            return Ok(placed(options, desc, BlobAction::Mounted));
        }
    }
    Ok(None)
}

async fn stream_blob(
    src: &dyn ImageStore,
    dst: &dyn ImageStore,
    desc: &Descriptor,
    options: &CopyOptions,
    counters: &Counters,
) -> Result<()> {
    let digest = &desc.digest;
    emit(
        options,
        CopyEvent::BlobStarted {
            digest: digest.clone(),
            size: desc.size,
        },
    );
    let clock = options.retry.clock();
    let started = clock.elapsed();
    let mut attempt = 0u32;
    let mut switched = false;
    let mut reauthenticated = false;
    // Set once the destination refused the bytes: from then on they are hashed here, so that
    // a corrupt source is named (DigestMismatch with the digest it sent).
    let mut verify_here = false;
    loop {
        attempt += 1;
        let e = match upload_blob(src, dst, desc, options, verify_here).await {
            Ok(()) => break,
            Err(Error::NotFound { location, .. }) if is_foreign_layer(&desc.media_type) => {
                return Err(Error::NotFound {
                    what: "foreign (non-distributable) layer: the source does not serve it and \
                           its URLs are never fetched, so it is not copied; its manifest cannot \
                           be mirrored",
                    location,
                });
            }
            Err(e) => e,
        };
        // The registry refused a monolithic upload and the client switched to chunks: the
        // source stream is spent, so open it again (once, not counted as a retry).
        if !switched && crate::store::http::is_upload_mode_switch(&e) {
            switched = true;
            attempt -= 1;
            continue;
        }
        if matches!(e, Error::DigestRejected { .. }) {
            verify_here = true;
        }
        // A token that expired mid-upload: the store dropped it; one fresh attempt.
        if !reauthenticated && matches!(e, Error::Unauthorized { .. }) {
            reauthenticated = true;
            attempt -= 1;
            continue;
        }
        match options
            .retry
            .wait_since(attempt, crate::retry::classify(&e), started)
        {
            Some(wait) => {
                tracing::debug!(digest = %digest, attempt, error = %e, "blob transfer failed; restarting it");
                crate::telemetry::retries(&Operation::BlobTransfer, 1);
                emit(
                    options,
                    CopyEvent::BlobRetry {
                        digest: digest.clone(),
                        attempt,
                        error: e.to_string(),
                    },
                );
                clock.sleep(wait).await;
            }
            None => return Err(e),
        }
    }
    counters.uploaded.fetch_add(1, Ordering::Relaxed);
    counters.bytes.fetch_add(desc.size, Ordering::Relaxed);
    emit(
        options,
        CopyEvent::BlobDone {
            digest: digest.clone(),
            action: BlobAction::Uploaded,
            size: desc.size,
        },
    );
    Ok(())
}

/// One transfer of a blob; with `verify_here` the bytes are hashed on the way, whatever the
/// destination does.
async fn upload_blob(
    src: &dyn ImageStore,
    dst: &dyn ImageStore,
    desc: &Descriptor,
    options: &CopyOptions,
    verify_here: bool,
) -> Result<()> {
    let digest = &desc.digest;
    let blob = src.get_blob(digest).await?;
    if let Some(announced) = blob.size {
        if announced != desc.size {
            return Err(Error::SizeMismatch {
                digest: digest.clone(),
                expected: desc.size,
                actual: announced,
            });
        }
    }
    let stream: BlobStream = match &options.events {
        None => blob.stream,
        Some(sink) => {
            let sink = sink.clone();
            let d = digest.clone();
            Box::pin(blob.stream.inspect_ok(move |chunk| {
                sink(&CopyEvent::BlobProgress {
                    digest: d.clone(),
                    bytes: chunk.len() as u64,
                })
            }))
        }
    };
    if verify_here {
        let verified = VerifyingStream::new(stream, digest.clone(), Some(desc.size));
        let failure = verified.failure();
        let put = dst.put_blob(digest, desc.size, Box::pin(verified)).await;
        return put.map_err(|e| take_failure(&failure).unwrap_or(e));
    }
    dst.put_blob(digest, desc.size, stream).await
}
