// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title proofmill proof market.
/// @notice A rollup buys proofs of its batches from registered proving networks. Its submitter
/// posts a request (keyed by chain id and batch number) with the inputs' public URL and
/// digest, a deadline and a maximum reward held here in escrow (ETH). The request is assigned
/// to one network: the preferred network when the admin set one and it is active, otherwise
/// the active networks in turn (round-robin by request count). The network acknowledges
/// (accepts or refuses) within `ackTimeout`, then posts the proof before the deadline with
/// the reward it asks (at most the maximum). The submitter checks the proof off-chain and
/// posts the validation result within `validationTimeout` of the proof: a valid proof earns
/// the network its reward, claimable once with `claimReward`. A proof the submitter leaves
/// unanswered past that window earns the reward too (`closeUnvalidatedRequest`): a rollup
/// cannot keep a network's pay by staying silent. Everything not earned goes back to the
/// submitter (refused, timed out, invalid, or the part of the maximum not asked for). Every
/// transition emits an event and every refusal is a custom error.
contract ProofMarket {
    enum Status {
        None,
        PendingAcknowledgement,
        Committed,
        Refused,
        Proven,
        Validated,
        ValidationFailed,
        TimedOut,
        /// Not validated within `validationTimeout` of the proof: the network earned its reward.
        ValidationTimedOut
    }

    struct RequestId {
        uint64 chainId;
        uint64 batchNumber;
    }

    struct RequestParams {
        string protocolVersion;
        /// Where the proof inputs can be read by anyone (e.g. an https URL of a public bucket).
        string inputsUrl;
        /// sha256 of the inputs, checked by the network after fetching them.
        bytes32 inputsDigest;
        /// Seconds from submission to the proof deadline (1..maxTimeoutAfter).
        uint64 timeoutAfter;
        /// Escrowed with the request: `msg.value` must equal it.
        uint256 maxReward;
    }

    struct Request {
        address network;
        Status status;
        uint64 submittedAt;
        uint64 deadline;
        /// Chain time by which the submitter must answer the posted proof (0 before one).
        uint64 validationDeadline;
        uint256 maxReward;
        /// What the network asked when it posted its proof.
        uint256 reward;
        bytes32 inputsDigest;
        bytes32 proofHash;
    }

    error NotAdmin(address caller);
    error NotSubmitter(address caller);
    error NotAssignedNetwork(address caller, address assigned);
    error UnknownRequest(uint64 chainId, uint64 batchNumber);
    error RequestExists(uint64 chainId, uint64 batchNumber);
    error WrongStatus(uint64 chainId, uint64 batchNumber, Status status);
    error ProofAlreadySubmitted(uint64 chainId, uint64 batchNumber);
    error AlreadyValidated(uint64 chainId, uint64 batchNumber);
    error AcknowledgementTooLate(uint64 chainId, uint64 batchNumber, uint64 ackDeadline);
    error ProofTooLate(uint64 chainId, uint64 batchNumber, uint64 deadline);
    error ValidationTooLate(uint64 chainId, uint64 batchNumber, uint64 validationDeadline);
    error NotTimedOut(uint64 chainId, uint64 batchNumber);
    error RewardOverCap(uint256 requested, uint256 maxReward);
    error EscrowMismatch(uint256 sent, uint256 maxReward);
    error BadTimeout(uint64 timeoutAfter, uint64 maxTimeoutAfter);
    error NoActiveNetwork();
    error UnknownNetwork(address network);
    error NothingToClaim(address caller);
    error TransferFailed(address to, uint256 amount);
    error BadConfig();

    event ProvingNetworkUpdated(address indexed network, bool active);
    event PreferredNetworkUpdated(address indexed network);
    event ProofRequestSubmitted(
        uint64 indexed chainId,
        uint64 indexed batchNumber,
        address indexed network,
        string protocolVersion,
        string inputsUrl,
        bytes32 inputsDigest,
        uint64 deadline,
        uint256 maxReward
    );
    event ProofRequestAcknowledged(
        uint64 indexed chainId, uint64 indexed batchNumber, address indexed network, bool accepted
    );
    event ProofRequestProven(
        uint64 indexed chainId, uint64 indexed batchNumber, address indexed network, bytes proof, uint256 requestedReward
    );
    event ProofValidationResult(
        uint64 indexed chainId, uint64 indexed batchNumber, address indexed network, bool valid, uint256 reward
    );
    event ProofRequestTimedOut(uint64 indexed chainId, uint64 indexed batchNumber, address indexed network);
    event ProofValidationTimedOut(
        uint64 indexed chainId, uint64 indexed batchNumber, address indexed network, uint256 reward
    );
    event RewardClaimed(address indexed network, uint256 amount);

    address public immutable admin;
    address public immutable submitter;
    /// Seconds a network has to acknowledge a request.
    uint64 public immutable ackTimeout;
    /// Longest `timeoutAfter` a request may ask.
    uint64 public immutable maxTimeoutAfter;
    /// Seconds the submitter has to post the validation result of a proof.
    uint64 public immutable validationTimeout;

    address[] private networkList;
    mapping(address => bool) public registered;
    mapping(address => bool) public active;
    address public preferredNetwork;
    uint256 public requestCount;
    mapping(address => uint256) public earned;
    mapping(bytes32 => Request) private requests;

    constructor(
        address admin_,
        address submitter_,
        uint64 ackTimeout_,
        uint64 maxTimeoutAfter_,
        uint64 validationTimeout_
    ) {
        if (
            admin_ == address(0) || submitter_ == address(0) || ackTimeout_ == 0 || maxTimeoutAfter_ == 0
                || validationTimeout_ == 0
        ) {
            revert BadConfig();
        }
        admin = admin_;
        submitter = submitter_;
        ackTimeout = ackTimeout_;
        maxTimeoutAfter = maxTimeoutAfter_;
        validationTimeout = validationTimeout_;
    }

    modifier onlyAdmin() {
        if (msg.sender != admin) revert NotAdmin(msg.sender);
        _;
    }

    modifier onlySubmitter() {
        if (msg.sender != submitter) revert NotSubmitter(msg.sender);
        _;
    }

    function key(RequestId calldata id) private pure returns (bytes32) {
        return keccak256(abi.encode(id.chainId, id.batchNumber));
    }

    function load(RequestId calldata id) private view returns (Request storage r) {
        r = requests[key(id)];
        if (r.status == Status.None) revert UnknownRequest(id.chainId, id.batchNumber);
    }

    /// Registers a network, or changes whether it takes requests.
    function updateProvingNetwork(address network, bool isActive) external onlyAdmin {
        if (network == address(0)) revert BadConfig();
        if (!registered[network]) {
            registered[network] = true;
            networkList.push(network);
        }
        active[network] = isActive;
        emit ProvingNetworkUpdated(network, isActive);
    }

    /// Every request goes to `network` while it is active (zero: round-robin).
    function updatePreferredProvingNetwork(address network) external onlyAdmin {
        if (network != address(0) && !registered[network]) revert UnknownNetwork(network);
        preferredNetwork = network;
        emit PreferredNetworkUpdated(network);
    }

    function provingNetworks() external view returns (address[] memory) {
        return networkList;
    }

    function getRequest(RequestId calldata id) external view returns (Request memory) {
        return requests[key(id)];
    }

    /// The network the next request goes to.
    function nextNetwork() public view returns (address) {
        if (preferredNetwork != address(0) && active[preferredNetwork]) return preferredNetwork;
        uint256 n = networkList.length;
        for (uint256 i = 0; i < n; ++i) {
            address candidate = networkList[(requestCount + i) % n];
            if (active[candidate]) return candidate;
        }
        revert NoActiveNetwork();
    }

    function submitProofRequest(RequestId calldata id, RequestParams calldata params)
        external
        payable
        onlySubmitter
    {
        bytes32 k = key(id);
        if (requests[k].status != Status.None) revert RequestExists(id.chainId, id.batchNumber);
        if (msg.value != params.maxReward) revert EscrowMismatch(msg.value, params.maxReward);
        if (params.timeoutAfter == 0 || params.timeoutAfter > maxTimeoutAfter) {
            revert BadTimeout(params.timeoutAfter, maxTimeoutAfter);
        }
        address network = nextNetwork();
        requestCount += 1;
        uint64 deadline = uint64(block.timestamp) + params.timeoutAfter;
        requests[k] = Request({
            network: network,
            status: Status.PendingAcknowledgement,
            submittedAt: uint64(block.timestamp),
            deadline: deadline,
            validationDeadline: 0,
            maxReward: params.maxReward,
            reward: 0,
            inputsDigest: params.inputsDigest,
            proofHash: bytes32(0)
        });
        emit ProofRequestSubmitted(
            id.chainId,
            id.batchNumber,
            network,
            params.protocolVersion,
            params.inputsUrl,
            params.inputsDigest,
            deadline,
            params.maxReward
        );
    }

    function acknowledgeProofRequest(RequestId calldata id, bool accept) external {
        Request storage r = load(id);
        if (msg.sender != r.network) revert NotAssignedNetwork(msg.sender, r.network);
        if (r.status != Status.PendingAcknowledgement) revert WrongStatus(id.chainId, id.batchNumber, r.status);
        uint64 ackDeadline = r.submittedAt + ackTimeout;
        if (block.timestamp > ackDeadline) revert AcknowledgementTooLate(id.chainId, id.batchNumber, ackDeadline);
        emit ProofRequestAcknowledged(id.chainId, id.batchNumber, r.network, accept);
        if (accept) {
            r.status = Status.Committed;
        } else {
            r.status = Status.Refused;
            refund(r.maxReward);
        }
    }

    function submitProof(RequestId calldata id, bytes calldata proof, uint256 requestedReward) external {
        Request storage r = load(id);
        if (msg.sender != r.network) revert NotAssignedNetwork(msg.sender, r.network);
        if (
            r.status == Status.Proven || r.status == Status.Validated || r.status == Status.ValidationFailed
                || r.status == Status.ValidationTimedOut
        ) {
            revert ProofAlreadySubmitted(id.chainId, id.batchNumber);
        }
        if (r.status != Status.Committed) revert WrongStatus(id.chainId, id.batchNumber, r.status);
        if (block.timestamp > r.deadline) revert ProofTooLate(id.chainId, id.batchNumber, r.deadline);
        if (requestedReward > r.maxReward) revert RewardOverCap(requestedReward, r.maxReward);
        r.status = Status.Proven;
        r.validationDeadline = uint64(block.timestamp) + validationTimeout;
        r.reward = requestedReward;
        r.proofHash = keccak256(proof);
        emit ProofRequestProven(id.chainId, id.batchNumber, r.network, proof, requestedReward);
    }

    function submitProofValidationResult(RequestId calldata id, bool valid) external onlySubmitter {
        Request storage r = load(id);
        requireProven(id, r);
        if (block.timestamp > r.validationDeadline) {
            revert ValidationTooLate(id.chainId, id.batchNumber, r.validationDeadline);
        }
        uint256 reward = valid ? r.reward : 0;
        r.status = valid ? Status.Validated : Status.ValidationFailed;
        earned[r.network] += reward;
        emit ProofValidationResult(id.chainId, id.batchNumber, r.network, valid, reward);
        refund(r.maxReward - reward);
    }

    /// Closes a request whose network did not acknowledge in time, or did not prove by the
    /// deadline, and returns its escrow to the submitter. Anyone may call it.
    function closeTimedOutRequest(RequestId calldata id) external {
        Request storage r = load(id);
        bool unacknowledged =
            r.status == Status.PendingAcknowledgement && block.timestamp > r.submittedAt + ackTimeout;
        bool unproven = r.status == Status.Committed && block.timestamp > r.deadline;
        if (!unacknowledged && !unproven) revert NotTimedOut(id.chainId, id.batchNumber);
        r.status = Status.TimedOut;
        emit ProofRequestTimedOut(id.chainId, id.batchNumber, r.network);
        refund(r.maxReward);
    }

    /// Closes a proven request the submitter did not answer within `validationTimeout`: the
    /// network earns the reward it asked, the rest of the escrow goes back. Anyone may call it.
    function closeUnvalidatedRequest(RequestId calldata id) external {
        Request storage r = load(id);
        requireProven(id, r);
        if (block.timestamp <= r.validationDeadline) revert NotTimedOut(id.chainId, id.batchNumber);
        r.status = Status.ValidationTimedOut;
        earned[r.network] += r.reward;
        emit ProofValidationTimedOut(id.chainId, id.batchNumber, r.network, r.reward);
        refund(r.maxReward - r.reward);
    }

    /// A proof is posted and not answered yet.
    function requireProven(RequestId calldata id, Request storage r) private view {
        if (
            r.status == Status.Validated || r.status == Status.ValidationFailed
                || r.status == Status.ValidationTimedOut
        ) {
            revert AlreadyValidated(id.chainId, id.batchNumber);
        }
        if (r.status != Status.Proven) revert WrongStatus(id.chainId, id.batchNumber, r.status);
    }

    /// Pays the caller every reward its validated proofs earned, once.
    function claimReward() external {
        uint256 amount = earned[msg.sender];
        if (amount == 0) revert NothingToClaim(msg.sender);
        earned[msg.sender] = 0;
        emit RewardClaimed(msg.sender, amount);
        send(msg.sender, amount);
    }

    function refund(uint256 amount) private {
        if (amount > 0) send(submitter, amount);
    }

    function send(address to, uint256 amount) private {
        (bool ok,) = to.call{value: amount}("");
        if (!ok) revert TransferFailed(to, amount);
    }
}
