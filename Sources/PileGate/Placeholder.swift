enum PileGatePlaceholder {}
