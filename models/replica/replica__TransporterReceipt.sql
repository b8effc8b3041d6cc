{{ replica_model('TransporterReceipt') }}
