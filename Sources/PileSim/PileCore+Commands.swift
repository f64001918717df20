import NIOCore
import YKC

/// Platform commands a logged-in pile answers the way firmware does (docs/ykc/PROTOCOL-FACTS.md §5.7).
extension PileCore {
    func answerCommand(_ frame: YKCFrame) {
        let seq = frame.sequence
        var answered = true
        switch YKCMessage.decode(frame) {
        case .readRealtimeData(let m):
            if let g = gunIndex(m.gun) { sendRealtime(gun: g, sequence: seq) } else { answered = false }
        case .remoteStart(let m):
            let (result, reason, g) = checkStart(pileId: m.pileId, gun: m.gun)
            send(RemoteStartReply(tradeSerial: m.tradeSerial, pileId: pileID, gun: m.gun, result: result, failureReason: reason), seq)
            if let g { beginSession(gun: g, tradeSerial: m.tradeSerial, origin: .app, card: m.physicalCardNumber) }
        case .remoteParallelStart(let m):
            let (result, reason, g) = checkStart(pileId: m.pileId, gun: m.gun)
            send(
                RemoteParallelStartReply(
                    tradeSerial: m.tradeSerial, pileId: pileID, gun: m.gun, result: result, failureReason: reason,
                    gunRole: .main, parallelSerial: m.parallelSerial), seq)
            if let g { beginSession(gun: g, tradeSerial: m.tradeSerial, origin: .app, card: m.physicalCardNumber) }
        case .remoteStop(let m):
            let g = gunIndex(m.gun)
            if m.pileId != pileID {
                send(RemoteStopReply(pileId: pileID, gun: m.gun, result: .failed, failureReason: .pileIdMismatch), seq)
            } else if let g, guns[g].session != nil {
                send(RemoteStopReply(pileId: pileID, gun: m.gun, result: .stopped, failureReason: .noReason), seq)
                endSession(gun: g, reason: .appRemoteStop)
            } else {
                send(RemoteStopReply(pileId: pileID, gun: m.gun, result: .failed, failureReason: .gunNotCharging), seq)
            }
        case .balanceUpdate(let m):
            send(BalanceUpdateReply(pileId: pileID, physicalCardNumber: m.physicalCardNumber, result: .updated), seq)
        case .offlineCardSync(let m):
            for card in m.cards { offlineCards.insert(card.physicalCardNumber) }
            send(OfflineCardSyncReply(pileId: pileID, result: .succeeded, reason: .noReason), seq)
        case .offlineCardClear(let m):
            for card in m.cards { offlineCards.remove(card.physicalCardNumber) }
            let results = m.cards.map {
                OfflineCardClearReply.ClearResult(physicalCardNumber: $0.physicalCardNumber, cleared: .succeeded, reason: 0)
            }
            send(OfflineCardClearReply(pileId: pileID, results: results), seq)
        case .offlineCardQuery(let m):
            let results = m.cards.map {
                OfflineCardQueryReply.QueryResult(
                    physicalCardNumber: $0.physicalCardNumber,
                    presence: offlineCards.contains($0.physicalCardNumber) ? .present : .absent)
            }
            send(OfflineCardQueryReply(pileId: pileID, results: results), seq)
        case .workParams:
            send(WorkParamsReply(pileId: pileID, result: .succeeded), seq)
        case .timeSync(let m):
            send(TimeSyncReply(pileId: pileID, time: m.time), seq)
        case .billingModelSet(let m):
            billingModel = BillingModelReply(
                pileId: pileID, billingModel: m.billingModel, sharpEnergyPrice: m.sharpEnergyPrice,
                sharpServiceFee: m.sharpServiceFee, peakEnergyPrice: m.peakEnergyPrice, peakServiceFee: m.peakServiceFee,
                flatEnergyPrice: m.flatEnergyPrice, flatServiceFee: m.flatServiceFee,
                valleyEnergyPrice: m.valleyEnergyPrice, valleyServiceFee: m.valleyServiceFee,
                lossRatio: m.lossRatio, periods: m.periods)
            send(BillingModelSetReply(pileId: pileID, result: .succeeded), seq)
        case .groundLockCommand(let m):
            send(GroundLockReply(pileId: pileID, gun: m.gun, result: .succeeded, reserved: HexBytes(zeros: 4)), seq)
        case .reboot(let m):
            send(RebootReply(pileId: pileID, result: .succeeded), seq)
            if config.rebootOnCommand && m.when == .immediately {
                // Give the reply a moment to leave before the "reboot" drops the link.
                rebootTimer = after(.milliseconds(20)) { self.close(.reboot) }
            }
        case .firmwareUpdate:
            send(FirmwareUpdateReply(pileId: pileID, status: .succeeded), seq)
        case .qrCodePrefix:
            // 0xF1 result polarity is disputed (docs/ykc/PROTOCOL-FACTS.md §7.9); FW, the pile-side source, uses 0 = success.
            send(QRCodePrefixReply(pileId: pileID, result: 0), seq)
        default:
            answered = false
        }
        if answered { counters?.commandsAnswered.wrappingIncrement(ordering: .relaxed) }
    }

    /// Whether a start on `gun` can go ahead: the 0x33/0xA3 result and reason, and the gun index.
    func checkStart(pileId: PileID, gun: GunNumber) -> (StartResult, StartFailureReason, Int?) {
        guard pileId == pileID else { return (.failed, .pileIdMismatch, nil) }
        guard let g = gunIndex(gun) else { return (.failed, .deviceFault, nil) }
        guard guns[g].session == nil else { return (.failed, .gunAlreadyCharging, nil) }
        return (.started, .noReason, g)
    }
}
