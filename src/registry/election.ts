// Leader election in etcd: one campaign per replica on a short lease of its own. Only the
// leader writes, and every write it makes is fenced on its campaign key's create revision
// inside the same transaction, so a deposed or paused leader's writes fail instead of
// applying (a new leader's campaign key has a newer create revision).
import { EventEmitter } from 'node:events';
import type { Campaign, Etcd3 } from 'etcd3';
import type { Logger } from 'pino';
import type { Fence } from './registry.ts';

export interface LeadershipEvents {
  elected: [fence: Fence];
  /** Leadership is gone (campaign lease lost, etcd said so): stop writing at once. */
  lost: [reason: string];
}

export class Leadership extends EventEmitter<LeadershipEvents> {
  readonly #client: Etcd3;
  readonly #name: string;
  readonly #identity: string;
  readonly #ttlSeconds: number;
  readonly #log: Logger;
  #campaign: Campaign | undefined;
  #fence: Fence | undefined;
  #resigned = false;

  constructor(client: Etcd3, options: { name: string; identity: string; ttlSeconds: number; logger: Logger }) {
    super();
    this.#client = client;
    this.#name = options.name;
    this.#identity = options.identity;
    this.#ttlSeconds = options.ttlSeconds;
    this.#log = options.logger;
  }

  /** The fence of the current term; undefined while not leader. */
  fence(): Fence | undefined {
    return this.#fence;
  }

  isLeader(): boolean {
    return this.#fence !== undefined;
  }

  /**
   * Campaigns; resolves once elected (a standby waits here). Rejects when the campaign fails
   * (etcd unreachable, campaign lease lost); the campaign is then abandoned, its lease revoked
   * when etcd can be reached, so that the caller's next campaign does not queue behind this
   * one's key until its TTL runs out.
   */
  async campaign(): Promise<Fence> {
    const campaign = this.#client.election(this.#name, this.#ttlSeconds).campaign(this.#identity);
    this.#campaign = campaign;
    const elected = new Promise<void>((resolve, reject) => {
      campaign.once('elected', () => resolve());
      campaign.on('error', (error: Error) => {
        const wasLeader = this.#fence !== undefined;
        this.#fence = undefined;
        reject(error);
        if (wasLeader && !this.#resigned) {
          this.#log.error({ err: error.message }, 'leadership lost');
          this.emit('lost', error.message);
        }
      });
    });
    try {
      await elected;
      const key = await campaign.getCampaignKey();
      const response = await this.#client.get(key).exec();
      const createRevision = response.kvs[0]?.create_revision;
      if (createRevision === undefined) throw new Error(`campaign key ${key} vanished right after the election`);
      if (this.#resigned) throw new Error('resigned while campaigning');
      this.#fence = { key, createRevision };
    } catch (error) {
      await this.resign();
      throw error;
    }
    this.#log.info({ identity: this.#identity, fence: this.#fence }, 'elected leader');
    this.emit('elected', this.#fence);
    return this.#fence;
  }

  /**
   * Gives leadership (or the campaign) up at once, so a standby takes over without waiting for
   * the TTL (SIGTERM; a lost or failed term). Never throws: if etcd cannot be reached the
   * campaign lease simply expires.
   */
  async resign(): Promise<void> {
    this.#resigned = true;
    this.#fence = undefined;
    await this.#campaign?.resign().catch((error: unknown) => this.#log.warn({ err: String(error) }, 'resign failed; the campaign lease will expire'));
  }
}
