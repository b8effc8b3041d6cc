{{ replica_model('BsddFinalOperation') }}
