//! Link flags N-API addons need on some platforms (macOS: dynamic lookup).
fn main() {
    napi_build::setup();
}
