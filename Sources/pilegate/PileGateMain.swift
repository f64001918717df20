import PileGateCLI

/// The `pilegate` executable: it runs `PileGateCommand`. Everything else is in the PileGateCLI
/// library, where it is unit-tested (Tests/PileGateCLITests).
@main
enum PileGateMain {
    static func main() async {
        await PileGateCommand.main()
    }
}
