enum PileSimPlaceholder {}
