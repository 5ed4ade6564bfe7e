fn main() {
    print!("{}", smtp_operator::crdgen::crd_yaml());
}
