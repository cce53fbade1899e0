//! A proxy-wasm filter that does nothing: the bench's baseline for what the proxy-wasm ABI costs
//! in Envoy before any filter logic runs. Two builds: the fewest callbacks Envoy needs (a context
//! per request and the request-headers callback), and with `same-callbacks` every callback
//! apim-filter exports. It reads nothing, writes nothing and allocates nothing.

#![no_std]

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    core::arch::wasm32::unreachable()
}

const CONTINUE: u32 = 0;

#[no_mangle]
pub extern "C" fn proxy_abi_version_0_2_1() {}

/// Never called: the filter asks the host for no data.
#[no_mangle]
pub extern "C" fn proxy_on_memory_allocate(_size: usize) -> *mut u8 {
    core::ptr::null_mut()
}

#[no_mangle]
pub extern "C" fn proxy_on_context_create(_context: u32, _parent: u32) {}

#[no_mangle]
pub extern "C" fn proxy_on_configure(_root: u32, _size: usize) -> u32 {
    1
}

#[no_mangle]
pub extern "C" fn proxy_on_request_headers(_context: u32, _headers: usize, _end_of_stream: u32) -> u32 {
    CONTINUE
}

#[cfg(feature = "same-callbacks")]
mod same_callbacks {
    use super::CONTINUE;

    #[no_mangle]
    pub extern "C" fn proxy_on_tick(_root: u32) {}
    #[no_mangle]
    pub extern "C" fn proxy_on_request_body(_context: u32, _size: usize, _end_of_stream: u32) -> u32 {
        CONTINUE
    }
    #[no_mangle]
    pub extern "C" fn proxy_on_request_trailers(_context: u32, _trailers: usize) -> u32 {
        CONTINUE
    }
    #[no_mangle]
    pub extern "C" fn proxy_on_response_headers(_context: u32, _headers: usize, _end_of_stream: u32) -> u32 {
        CONTINUE
    }
    #[no_mangle]
    pub extern "C" fn proxy_on_response_body(_context: u32, _size: usize, _end_of_stream: u32) -> u32 {
        CONTINUE
    }
    #[no_mangle]
    pub extern "C" fn proxy_on_delete(_context: u32) {}
    #[no_mangle]
    pub extern "C" fn proxy_on_http_call_response(_root: u32, _token: u32, _headers: usize, _size: usize, _: usize) {}
    #[no_mangle]
    pub extern "C" fn proxy_on_grpc_receive(_root: u32, _token: u32, _size: usize) {}
    #[no_mangle]
    pub extern "C" fn proxy_on_grpc_close(_root: u32, _token: u32, _status: u32) {}
}
