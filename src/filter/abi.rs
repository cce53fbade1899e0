//! The proxy-wasm ABI 0.2.1 host functions, called directly, and safe wrappers over them.
//!
//! Why not the SDK: its host-call wrappers `panic!` on any status they do not expect and unwrap
//! the UTF-8 conversion of header maps, so one obs-text byte in a header killed the VM. Here every
//! status is data ([`HostError`]), every value the host returns is bytes, and every buffer the
//! host hands back is parsed with bounds checks. Nothing in this module can panic on host data.
//!
//! Memory the host returns was allocated through [`proxy_on_memory_allocate`] (the exported
//! allocator, exact-size byte allocations), so it is taken back as a `Vec<u8>` of that size.

use std::alloc::{alloc, Layout};
use std::ptr::null_mut;

use crate::host::{decode_pairs, encode_pairs, HostError};

const NOT_FOUND: u32 = 1;

pub type HostResult<T> = Result<T, HostError>;

fn check(status: u32) -> HostResult<()> {
    if status == 0 {
        Ok(())
    } else {
        Err(HostError(status))
    }
}

mod sys {
    #[link(wasm_import_module = "env")]
    extern "C" {
        pub fn proxy_log(level: u32, message: *const u8, message_size: usize) -> u32;
        pub fn proxy_get_log_level(level: *mut u32) -> u32;
        pub fn proxy_get_current_time_nanoseconds(time: *mut u64) -> u32;
        pub fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
        pub fn proxy_get_buffer_bytes(
            buffer: u32,
            start: usize,
            max_size: usize,
            data: *mut *mut u8,
            size: *mut usize,
        ) -> u32;
        pub fn proxy_set_buffer_bytes(buffer: u32, start: usize, size: usize, data: *const u8, data_size: usize)
            -> u32;
        pub fn proxy_get_header_map_pairs(map: u32, data: *mut *mut u8, size: *mut usize) -> u32;
        pub fn proxy_get_header_map_value(
            map: u32,
            key: *const u8,
            key_size: usize,
            value: *mut *mut u8,
            value_size: *mut usize,
        ) -> u32;
        pub fn proxy_replace_header_map_value(
            map: u32,
            key: *const u8,
            key_size: usize,
            value: *const u8,
            value_size: usize,
        ) -> u32;
        pub fn proxy_remove_header_map_value(map: u32, key: *const u8, key_size: usize) -> u32;
        pub fn proxy_get_property(
            path: *const u8,
            path_size: usize,
            value: *mut *mut u8,
            value_size: *mut usize,
        ) -> u32;
        pub fn proxy_set_property(path: *const u8, path_size: usize, value: *const u8, value_size: usize) -> u32;
        pub fn proxy_get_shared_data(
            key: *const u8,
            key_size: usize,
            value: *mut *mut u8,
            value_size: *mut usize,
            cas: *mut u32,
        ) -> u32;
        pub fn proxy_set_shared_data(
            key: *const u8,
            key_size: usize,
            value: *const u8,
            value_size: usize,
            cas: u32,
        ) -> u32;
        pub fn proxy_continue_stream(stream: u32) -> u32;
        pub fn proxy_close_stream(stream: u32) -> u32;
        #[allow(clippy::too_many_arguments)]
        pub fn proxy_send_local_response(
            status: u32,
            details: *const u8,
            details_size: usize,
            body: *const u8,
            body_size: usize,
            headers: *const u8,
            headers_size: usize,
            grpc_status: i32,
        ) -> u32;
        #[allow(clippy::too_many_arguments)]
        pub fn proxy_http_call(
            upstream: *const u8,
            upstream_size: usize,
            headers: *const u8,
            headers_size: usize,
            body: *const u8,
            body_size: usize,
            trailers: *const u8,
            trailers_size: usize,
            timeout_ms: u32,
            token: *mut u32,
        ) -> u32;
        #[allow(clippy::too_many_arguments)]
        pub fn proxy_grpc_call(
            service: *const u8,
            service_size: usize,
            service_name: *const u8,
            service_name_size: usize,
            method: *const u8,
            method_size: usize,
            metadata: *const u8,
            metadata_size: usize,
            message: *const u8,
            message_size: usize,
            timeout_ms: u32,
            token: *mut u32,
        ) -> u32;
        pub fn proxy_get_status(code: *mut u32, message: *mut *mut u8, message_size: *mut usize) -> u32;
        pub fn proxy_set_effective_context(context: u32) -> u32;
        pub fn proxy_define_metric(kind: u32, name: *const u8, name_size: usize, id: *mut u32) -> u32;
        pub fn proxy_increment_metric(id: u32, offset: i64) -> u32;
        pub fn proxy_call_foreign_function(
            name: *const u8,
            name_size: usize,
            arguments: *const u8,
            arguments_size: usize,
            results: *mut *mut u8,
            results_size: *mut usize,
        ) -> u32;
    }
}

/// The allocator the host uses to hand data to the module: exact-size byte allocations, null
/// when memory is exhausted (the host then reports InvalidMemoryAccess instead of trapping).
#[no_mangle]
pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
    match Layout::array::<u8>(size) {
        // SAFETY: the layout has a non-zero size; a null result is passed on to the host.
        Ok(layout) if layout.size() > 0 => unsafe { alloc(layout) },
        _ => null_mut(),
    }
}

/// Takes ownership of a buffer the host allocated through [`proxy_on_memory_allocate`].
fn take(data: *mut u8, size: usize) -> Vec<u8> {
    if data.is_null() || size == 0 {
        return Vec::new();
    }
    // SAFETY: the host wrote `size` bytes into memory it got from our allocator for exactly
    // `size` bytes (align 1), which is the layout a `Vec<u8>` of capacity `size` frees with.
    unsafe { Vec::from_raw_parts(data, size, size) }
}

// ---------------------------------------------------------------------------------------------
// Logging and time.
// ---------------------------------------------------------------------------------------------

pub fn log(level: u32, message: &str) {
    // SAFETY: pointer and length of a live string.
    unsafe {
        sys::proxy_log(level, message.as_ptr(), message.len());
    }
}

/// Envoy's log level for this plugin (0 trace .. 5 critical, 6 off).
pub fn log_level() -> HostResult<u32> {
    let mut level = 0;
    // SAFETY: a valid out-pointer.
    check(unsafe { sys::proxy_get_log_level(&mut level) })?;
    Ok(level)
}

/// Wall-clock time in nanoseconds since the Unix epoch.
pub fn now_nanos() -> HostResult<u64> {
    let mut time = 0;
    // SAFETY: a valid out-pointer.
    check(unsafe { sys::proxy_get_current_time_nanoseconds(&mut time) })?;
    Ok(time)
}

/// Asks for `proxy_on_tick` on the root context every `period` milliseconds (0: never).
pub fn set_tick_period_ms(period: u32) -> HostResult<()> {
    // SAFETY: no pointers.
    check(unsafe { sys::proxy_set_tick_period_milliseconds(period) })
}

// ---------------------------------------------------------------------------------------------
// Buffers.
// ---------------------------------------------------------------------------------------------

pub const BUFFER_HTTP_REQUEST_BODY: u32 = 0;
pub const BUFFER_HTTP_RESPONSE_BODY: u32 = 1;
pub const BUFFER_HTTP_CALL_RESPONSE_BODY: u32 = 4;
pub const BUFFER_GRPC_RECEIVE: u32 = 5;
pub const BUFFER_PLUGIN_CONFIGURATION: u32 = 7;

/// Up to `max_size` bytes of a buffer from `start`; `None` when the host has no such buffer now.
pub fn buffer(kind: u32, start: usize, max_size: usize) -> HostResult<Option<Vec<u8>>> {
    let mut data = null_mut();
    let mut size = 0;
    // SAFETY: valid out-pointers; the result is taken back with `take`.
    let status = unsafe { sys::proxy_get_buffer_bytes(kind, start, max_size, &mut data, &mut size) };
    match status {
        0 => Ok(Some(take(data, size))),
        NOT_FOUND => Ok(None),
        other => Err(HostError(other)),
    }
}

/// Replaces `size` bytes of a buffer from `start` with `data` (Envoy: from 0, the first `size`
/// bytes are drained and `data` put before the rest).
pub fn set_buffer(kind: u32, start: usize, size: usize, data: &[u8]) -> HostResult<()> {
    // SAFETY: `data` is valid for its length during the call; the host copies it.
    check(unsafe { sys::proxy_set_buffer_bytes(kind, start, size, data.as_ptr(), data.len()) })
}

// ---------------------------------------------------------------------------------------------
// Header maps.
// ---------------------------------------------------------------------------------------------

pub const MAP_REQUEST_HEADERS: u32 = 0;
pub const MAP_REQUEST_TRAILERS: u32 = 1;
pub const MAP_RESPONSE_HEADERS: u32 = 2;
pub const MAP_HTTP_CALL_RESPONSE_HEADERS: u32 = 6;

/// A header as the host has it: the name (lowercase in Envoy) and the value, both bytes.
pub type RawHeader = (Vec<u8>, Vec<u8>);

/// Every header of a map; malformed host data yields the headers that could be read.
pub fn header_pairs(map: u32) -> HostResult<Vec<RawHeader>> {
    let mut data = null_mut();
    let mut size = 0;
    // SAFETY: valid out-pointers; the result is taken back with `take`.
    check(unsafe { sys::proxy_get_header_map_pairs(map, &mut data, &mut size) })?;
    Ok(decode_pairs(&take(data, size)))
}

/// One header's value (the first, when repeated); `None` when absent.
pub fn header_value(map: u32, name: &str) -> HostResult<Option<Vec<u8>>> {
    let mut data = null_mut();
    let mut size = 0;
    // SAFETY: pointer and length of a live string; valid out-pointers.
    let status = unsafe { sys::proxy_get_header_map_value(map, name.as_ptr(), name.len(), &mut data, &mut size) };
    match status {
        0 => Ok(Some(take(data, size))),
        NOT_FOUND => Ok(None),
        other => Err(HostError(other)),
    }
}

pub fn replace_header(map: u32, name: &str, value: &[u8]) -> HostResult<()> {
    // SAFETY: pointers and lengths of live values.
    check(unsafe { sys::proxy_replace_header_map_value(map, name.as_ptr(), name.len(), value.as_ptr(), value.len()) })
}

pub fn remove_header(map: u32, name: &str) -> HostResult<()> {
    // SAFETY: pointer and length of a live string.
    check(unsafe { sys::proxy_remove_header_map_value(map, name.as_ptr(), name.len()) })
}

// ---------------------------------------------------------------------------------------------
// Properties and shared data.
// ---------------------------------------------------------------------------------------------

/// A property path as the host reads it (segments separated by NUL); one segment is its own
/// bytes (no copy).
fn property_path<'p>(path: &[&'p str]) -> std::borrow::Cow<'p, [u8]> {
    match path {
        [one] => std::borrow::Cow::Borrowed(one.as_bytes()),
        _ => std::borrow::Cow::Owned(path.join("\0").into_bytes()),
    }
}

/// A property (`["response", "flags"]`) as bytes; `None` when the host does not have it.
pub fn property(path: &[&str]) -> HostResult<Option<Vec<u8>>> {
    let path = property_path(path);
    let mut data = null_mut();
    let mut size = 0;
    // SAFETY: pointer and length of a live buffer; valid out-pointers.
    let status = unsafe { sys::proxy_get_property(path.as_ptr(), path.len(), &mut data, &mut size) };
    match status {
        0 => Ok(Some(take(data, size))),
        NOT_FOUND => Ok(None),
        other => Err(HostError(other)),
    }
}

/// Sets a property: for a one-segment path, the request's filter state `wasm.<path>` (what an
/// access log reads with `%FILTER_STATE(wasm.<path>:PLAIN)%`).
pub fn set_property(path: &[&str], value: &[u8]) -> HostResult<()> {
    let path = property_path(path);
    // SAFETY: pointers and lengths of live buffers.
    check(unsafe { sys::proxy_set_property(path.as_ptr(), path.len(), value.as_ptr(), value.len()) })
}

/// A shared-data value and its CAS token; `None` when the key does not exist.
pub fn shared_get(key: &str) -> HostResult<Option<(Vec<u8>, u32)>> {
    let mut data = null_mut();
    let mut size = 0;
    let mut cas = 0;
    // SAFETY: pointer and length of a live string; valid out-pointers.
    let status = unsafe { sys::proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas) };
    match status {
        0 => Ok(Some((take(data, size), cas))),
        NOT_FOUND => Ok(None),
        other => Err(HostError(other)),
    }
}

/// Writes shared data; with a CAS token only if the value is unchanged since it was read
/// (`HostError(CAS_MISMATCH)` otherwise). Without a token the write is unconditional.
pub fn shared_set(key: &str, value: &[u8], cas: Option<u32>) -> HostResult<()> {
    // SAFETY: pointers and lengths of live buffers.
    check(unsafe { sys::proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas.unwrap_or(0)) })
}

// ---------------------------------------------------------------------------------------------
// Streams, local replies, calls.
// ---------------------------------------------------------------------------------------------

const STREAM_REQUEST: u32 = 0;

pub fn continue_request() -> HostResult<()> {
    // SAFETY: no pointers.
    check(unsafe { sys::proxy_continue_stream(STREAM_REQUEST) })
}

/// Resets the current HTTP stream (Envoy does it once the callback returns): for an upgraded
/// connection, the connection ends.
pub fn close_request() -> HostResult<()> {
    // SAFETY: no pointers.
    check(unsafe { sys::proxy_close_stream(STREAM_REQUEST) })
}

/// Answers the current stream locally (Envoy sends it once the callback returns). A gRPC request
/// gets `grpc_status` (-1: Envoy's mapping of `status`).
pub fn send_local_response(
    status: u32,
    details: &str,
    body: &[u8],
    headers: &[(&str, &[u8])],
    grpc_status: i32,
) -> HostResult<()> {
    let headers = encode_pairs(headers);
    // SAFETY: pointers and lengths of live buffers.
    check(unsafe {
        sys::proxy_send_local_response(
            status,
            details.as_ptr(),
            details.len(),
            body.as_ptr(),
            body.len(),
            headers.as_ptr(),
            headers.len(),
            grpc_status,
        )
    })
}

/// Makes `context` the one later host calls act on (callout answers arrive on the root).
pub fn set_effective_context(context: u32) -> HostResult<()> {
    // SAFETY: no pointers.
    check(unsafe { sys::proxy_set_effective_context(context) })
}

/// Dispatches an HTTP call to an Envoy cluster; returns its token.
pub fn http_call(cluster: &str, headers: &[(&str, &[u8])], body: &[u8], timeout_ms: u32) -> HostResult<u32> {
    let headers = encode_pairs(headers);
    let trailers = encode_pairs(&[]);
    let mut token = 0;
    // SAFETY: pointers and lengths of live buffers; a valid out-pointer.
    check(unsafe {
        sys::proxy_http_call(
            cluster.as_ptr(),
            cluster.len(),
            headers.as_ptr(),
            headers.len(),
            body.as_ptr(),
            body.len(),
            trailers.as_ptr(),
            trailers.len(),
            timeout_ms,
            &mut token,
        )
    })?;
    Ok(token)
}

/// `envoy.config.core.v3.GrpcService` (only its `envoy_grpc` target).
#[derive(Clone, PartialEq, prost::Message)]
struct GrpcService {
    #[prost(message, optional, tag = "1")]
    envoy_grpc: Option<EnvoyGrpc>,
}

/// `envoy.config.core.v3.GrpcService.EnvoyGrpc`.
#[derive(Clone, PartialEq, prost::Message)]
struct EnvoyGrpc {
    #[prost(string, tag = "1")]
    cluster_name: String,
}

/// The `service` argument of a gRPC call: Envoy takes a `GrpcService{envoy_grpc{cluster_name}}`
/// message (a bare cluster name is only a fallback that some names defeat).
pub fn grpc_service_for_cluster(cluster: &str) -> Vec<u8> {
    prost::Message::encode_to_vec(&GrpcService { envoy_grpc: Some(EnvoyGrpc { cluster_name: cluster.to_string() }) })
}

/// Dispatches a unary gRPC call (the message without gRPC framing); returns its token.
pub fn grpc_call(
    cluster: &str,
    service: &str,
    method: &str,
    metadata: &[(&str, &[u8])],
    message: &[u8],
    timeout_ms: u32,
) -> HostResult<u32> {
    let target = grpc_service_for_cluster(cluster);
    let metadata = encode_pairs(metadata);
    let mut token = 0;
    // SAFETY: pointers and lengths of live buffers; a valid out-pointer.
    check(unsafe {
        sys::proxy_grpc_call(
            target.as_ptr(),
            target.len(),
            service.as_ptr(),
            service.len(),
            method.as_ptr(),
            method.len(),
            metadata.as_ptr(),
            metadata.len(),
            message.as_ptr(),
            message.len(),
            timeout_ms,
            &mut token,
        )
    })?;
    Ok(token)
}

/// The status code and message of the call whose failure is being delivered.
pub fn call_status() -> HostResult<(u32, Vec<u8>)> {
    let mut code = 0;
    let mut data = null_mut();
    let mut size = 0;
    // SAFETY: valid out-pointers; the result is taken back with `take`.
    check(unsafe { sys::proxy_get_status(&mut code, &mut data, &mut size) })?;
    Ok((code, take(data, size)))
}

// ---------------------------------------------------------------------------------------------
// Metrics.
// ---------------------------------------------------------------------------------------------

pub const METRIC_COUNTER: u32 = 0;

pub fn define_metric(kind: u32, name: &str) -> HostResult<u32> {
    let mut id = 0;
    // SAFETY: pointer and length of a live string; a valid out-pointer.
    check(unsafe { sys::proxy_define_metric(kind, name.as_ptr(), name.len(), &mut id) })?;
    Ok(id)
}

pub fn increment_metric(id: u32, offset: i64) -> HostResult<()> {
    // SAFETY: no pointers.
    check(unsafe { sys::proxy_increment_metric(id, offset) })
}

// ---------------------------------------------------------------------------------------------
// Foreign functions (Envoy's extensions to the ABI).
// ---------------------------------------------------------------------------------------------

/// Calls one of the host's foreign functions by name (Envoy's `declare_property`, for one).
pub fn call_foreign_function(name: &str, arguments: &[u8]) -> HostResult<Vec<u8>> {
    let mut data = null_mut();
    let mut size = 0;
    // SAFETY: pointers and lengths of live buffers; valid out-pointers; the result is taken back
    // with `take`.
    check(unsafe {
        sys::proxy_call_foreign_function(
            name.as_ptr(),
            name.len(),
            arguments.as_ptr(),
            arguments.len(),
            &mut data,
            &mut size,
        )
    })?;
    Ok(take(data, size))
}
