//! The CNI plugin binary: install it as `attach-cni` in a CNI plugin
//! directory and name it in a network configuration's `"type"`.
fn main() -> std::process::ExitCode {
    attach::cni::main()
}
