{{ replica_model('BsddRevisionRequest') }}
