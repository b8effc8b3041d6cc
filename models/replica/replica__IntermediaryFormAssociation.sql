{{ replica_model('IntermediaryFormAssociation') }}
