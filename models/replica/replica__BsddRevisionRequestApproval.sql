{{ replica_model('BsddRevisionRequestApproval') }}
