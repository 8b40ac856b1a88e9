fn main() {
    println!("{}", attach::EBPF_OBJECT.len());
}
